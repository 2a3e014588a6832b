//! Without a Docker Engine the container stage says what is missing and how to get it
//! (`scripts/containers check`, which the test command runs first), rather than failing
//! obscurely later or skipping in silence.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `scripts/containers check` with `env` set: (exit code, standard error).
fn check(path: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new("bash");
    command
        .arg("scripts/containers")
        .arg("check")
        .current_dir(root());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run scripts/containers");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn no_docker_command_names_what_to_install() {
    // A PATH with the shell's own tools and no docker.
    let dir = std::env::temp_dir().join(format!("pb-no-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["bash", "dirname", "cat", "sed"] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| PathBuf::from(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {tool}"));
        let _ = std::os::unix::fs::symlink(found, dir.join(tool));
    }
    let (code, said) = check(Some(dir.to_str().unwrap()), &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no `docker` command"), "{said}");
    assert!(
        said.contains("apt-get install docker.io docker-compose"),
        "{said}"
    );
    assert!(said.contains("PB_CONTAINERS=skip"), "{said}");
}

#[test]
fn an_engine_that_does_not_answer_says_how_to_start_it() {
    let (code, said) = check(None, &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    if said.contains("no `docker` command") {
        // This machine has no docker at all: the case above.
        return;
    }
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("the Docker Engine does not answer"), "{said}");
    assert!(said.contains("systemctl start docker"), "{said}");
}
