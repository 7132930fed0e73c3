//! Raises the soft open-file limit to the hard one at start-up, so a burst of connections
//! does not run into the default of 1,024 while the system would allow far more.

/// Highest soft limit asked for when the hard limit is unlimited: Linux refuses more than
/// `fs.nr_open`, which defaults to this.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The open-file limits before and after start-up raised them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimits {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit (or to `fs.nr_open` when the hard limit
/// is unlimited) and tells what it was and is.
pub fn raise_to_hard_limit() -> std::io::Result<OpenFileLimits> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, aligned value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(UNLIMITED_TARGET)
    } else {
        limit.rlim_max
    };
    if soft_before < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` through a pointer to a live, aligned value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(OpenFileLimits {
        soft_before,
        soft: soft_before.max(target),
        hard: limit.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    use super::raise_to_hard_limit;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let limits = raise_to_hard_limit().unwrap();
        assert!(limits.soft >= limits.soft_before);
        assert!(limits.soft <= limits.hard);
        assert_eq!(raise_to_hard_limit().unwrap().soft_before, limits.soft);
    }
}
