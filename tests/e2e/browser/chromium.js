// How the browser checks launch Debian's Chromium: test tools must never download a browser of their own.
'use strict';

const CHROMIUM_PATH = '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps dialling Google services, which a
// closed network refuses; root needs --no-sandbox. Playwright adds a fresh --user-data-dir.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

module.exports = { CHROMIUM_PATH, CHROMIUM_ARGS };
