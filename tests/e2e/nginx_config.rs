//! nginx as the tests and the load benchmark run it: unprivileged, in the foreground, with
//! its pid, error log and temporary files in one directory.

use std::path::Path;

/// Debian's nginx, installed by `scripts/install-test-tools.sh`.
pub const NGINX: &str = "/usr/sbin/nginx";

/// A configuration for one worker process that keeps everything in `dir`. `main` adds
/// directives to the main context; `http` is the rest of the `http` block (servers,
/// upstreams, logging).
pub fn nginx_config(dir: &Path, main: &str, http: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;
{main}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}}}
"
    )
}
