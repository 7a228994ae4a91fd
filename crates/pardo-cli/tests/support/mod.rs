//! Helpers shared by the CLI tests.
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;

/// The real `pardo` binary.
pub fn pardo() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("pardo").expect("the pardo binary is built")
}

/// Waits (without a time limit on the assertion) until `path` exists.
pub fn wait_for(path: &Path) {
    while !path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
