//! Tests that need something this machine may not have (tansu, etcd, root): where it is
//! missing they say they are skipped, except under `CI=true`, where a test that cannot run is a
//! failure: CI must never pass a test that did not run. `tests/run.sh` sets `CI=true` when it
//! runs under `.ci/run`.

/// True under `CI=true`.
pub fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Says that `test` is skipped because `why`, or panics with `why` under `CI=true`.
///
/// # Panics
/// Under `CI=true`.
pub fn skip(test: &str, why: &str) {
    assert!(!is_ci(), "{test} cannot run under CI=true: {why}");
    eprintln!("{test}: skipped, {why}");
}

/// `found`, or `None` after [`skip`]ping `test` because `why`.
///
/// # Panics
/// When nothing was found, under `CI=true`.
pub fn or_skip<T>(found: Option<T>, test: &str, why: &str) -> Option<T> {
    if found.is_none() {
        skip(test, why);
    }
    found
}

/// The executable `name` in a directory of `$PATH`.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
