//! Which shell runs the templates that need one, chosen as GNU parallel does.
//!
//! In order: `PARALLEL_SHELL`; else the shell pardo was started from (the nearest ancestor
//! process whose executable is one, as GNU parallel looks); else `SHELL`; else `/bin/sh`.
//! Only shells whose quoting pardo knows are used, since the quoting guarantees of
//! [`Template`](super::Template) rest on it: the sh family (`sh`, `dash`, `bash`, `zsh`, `ksh`,
//! `mksh`, `ash`, busybox's `sh`/`ash`). A shell named explicitly in `PARALLEL_SHELL` that is
//! not one of them (csh, tcsh, fish, …) is an error; one only found implicitly (an ancestor
//! process or `SHELL`) is passed over, falling back to the next choice and finally to
//! `/bin/sh`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The sh-family shell names whose quoting pardo knows.
const KNOWN: &[&str] = &["sh", "dash", "bash", "zsh", "ksh", "ksh93", "mksh", "ash"];

/// Why no shell could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PARALLEL_SHELL={0}: pardo does not know how this shell quotes, so it cannot keep values \
     from running as code; use one of sh, dash, bash, zsh, ksh, mksh or ash"
)]
pub struct UnknownShell(pub String);

/// True when `path` names a shell of the sh family (by its file name).
pub fn is_known(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| KNOWN.contains(&n))
}

/// Chooses the shell from explicit settings: `parallel_shell` (`PARALLEL_SHELL`), `parent`
/// (the shell pardo was started from), `shell` (`SHELL`).
///
/// ```
/// use std::path::{Path, PathBuf};
/// use pardo::command::shell::choose;
/// assert_eq!(choose(None, Some(Path::new("/usr/bin/fish")), Some("/bin/bash".as_ref())),
///            Ok(PathBuf::from("/bin/bash")));
/// assert!(choose(Some("/usr/bin/fish".as_ref()), None, None).is_err());
/// ```
pub fn choose(
    parallel_shell: Option<&OsStr>,
    parent: Option<&Path>,
    shell: Option<&OsStr>,
) -> Result<PathBuf, UnknownShell> {
    if let Some(s) = parallel_shell.filter(|s| !s.is_empty()) {
        let p = PathBuf::from(s);
        return if is_known(&p) {
            Ok(p)
        } else {
            Err(UnknownShell(p.display().to_string()))
        };
    }
    let implicit = [parent.map(Path::to_path_buf), shell.map(PathBuf::from)];
    Ok(implicit
        .into_iter()
        .flatten()
        .find(|p| p.is_absolute() && is_known(p))
        .unwrap_or_else(|| PathBuf::from("/bin/sh")))
}

/// The shell for this process, chosen once from the environment (see the module docs).
///
/// # Errors
///
/// [`UnknownShell`] when `PARALLEL_SHELL` names a shell pardo cannot quote for.
pub fn current() -> Result<&'static Path, UnknownShell> {
    static SHELL: OnceLock<Result<PathBuf, UnknownShell>> = OnceLock::new();
    SHELL
        .get_or_init(|| {
            let parent = parent_shell();
            choose(
                std::env::var_os("PARALLEL_SHELL").as_deref(),
                parent.as_deref(),
                std::env::var_os("SHELL").as_deref(),
            )
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// The nearest ancestor process (parent, grandparent, …) whose executable is a shell pardo
/// knows, from `/proc` (Linux). GNU parallel too looks past the parent: run from a test
/// harness, `make` or a Python script, both pick the shell that started those.
fn parent_shell() -> Option<PathBuf> {
    // SAFETY: getppid has no preconditions and cannot fail.
    let ppid = unsafe { libc::getppid() };
    nearest_shell(
        ppid,
        |pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        parent_of,
    )
}

/// The walk of [`parent_shell`] from `pid` up, over a process table given as the executable
/// and the parent of each pid.
fn nearest_shell(
    mut pid: libc::pid_t,
    exe_of: impl Fn(libc::pid_t) -> Option<PathBuf>,
    parent_of: impl Fn(libc::pid_t) -> Option<libc::pid_t>,
) -> Option<PathBuf> {
    // Bounded, so a /proc that misreports parents cannot keep the walk going.
    for _ in 0..64 {
        // 0: the parent is outside this PID namespace.
        if pid < 1 {
            return None;
        }
        if let Some(exe) = exe_of(pid).filter(|e| is_known(e)) {
            return Some(exe);
        }
        // pid 1 may be the shell (`docker run IMAGE bash -c 'pardo …'`), but has no parent.
        if pid == 1 {
            return None;
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The parent pid of `pid`: the field after the state in `/proc/PID/stat`, read after the last
/// `)` since the command name between parentheses may hold spaces and parentheses.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// True when `name` is a function bash exported (`export -f name`) into this environment, so
/// only a bash shell can run it.
pub fn is_exported_function(name: &OsStr) -> bool {
    if name.as_bytes().contains(&b'/') {
        return false;
    }
    let mut var = OsString::from("BASH_FUNC_");
    var.push(name);
    var.push("%%");
    std::env::var_os(var).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_reads_the_parent_pid_past_the_command_name() {
        // SAFETY: getpid and getppid have no preconditions and cannot fail.
        let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
        assert_eq!(parent_of(me), Some(parent));
        assert_eq!(parent_of(-1), None);
    }

    #[test]
    fn the_nearest_known_shell_among_the_ancestors_is_found_pid_1_included() {
        // pid → (executable, parent)
        let table = |rows: &'static [(i32, &'static str, i32)]| {
            move |pid: i32| rows.iter().find(|r| r.0 == pid).copied()
        };
        let walk = |rows: &'static [(i32, &'static str, i32)], from: i32| {
            let row = table(rows);
            nearest_shell(
                from,
                |p| row(p).map(|r| PathBuf::from(r.1)),
                |p| row(p).map(|r| r.2),
            )
        };
        // make → timeout → pardo, started from zsh.
        let rows = &[
            (9, "/usr/bin/timeout", 8),
            (8, "/usr/bin/make", 7),
            (7, "/usr/bin/zsh", 1),
            (1, "/usr/lib/systemd/systemd", 0),
        ];
        assert_eq!(walk(rows, 9), Some(PathBuf::from("/usr/bin/zsh")));
        // A container whose pid 1 is the shell.
        let rows = &[(5, "/usr/bin/timeout", 1), (1, "/usr/bin/bash", 0)];
        assert_eq!(walk(rows, 5), Some(PathBuf::from("/usr/bin/bash")));
        // fish is passed over; no sh-family shell above it.
        let rows = &[(4, "/usr/bin/fish", 3), (3, "/usr/bin/python3", 0)];
        assert_eq!(walk(rows, 4), None);
        // A table whose parents loop ends the walk all the same.
        let rows = &[(6, "/usr/bin/env", 7), (7, "/usr/bin/env", 6)];
        assert_eq!(walk(rows, 6), None);
    }

    #[test]
    fn explicit_unknown_shell_is_an_error_implicit_one_falls_back() {
        let fish = Some(OsStr::new("/usr/bin/fish"));
        assert!(choose(fish, None, None).is_err());
        assert_eq!(
            choose(None, Some(Path::new("/bin/tcsh")), fish),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            choose(
                None,
                Some(Path::new("/usr/bin/zsh")),
                Some("/bin/bash".as_ref())
            ),
            Ok(PathBuf::from("/usr/bin/zsh"))
        );
        assert_eq!(
            choose(Some("/usr/bin/dash".as_ref()), None, None),
            Ok(PathBuf::from("/usr/bin/dash"))
        );
    }
}
