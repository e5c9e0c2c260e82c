//! `tandem check-config` accepts the shipped configuration and names the key of a bad one.

use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_shipped_configuration_is_valid() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tandem.toml"))
            .unwrap();
    let (ok, text) = check(&shipped);
    assert!(ok, "{text}");
}

#[test]
fn bad_configurations_name_the_key() {
    for (config, key) in [
        ("[sip]\nlisten = \"nowhere\"\n", "listen"),
        ("[sip]\nlisen = \"127.0.0.1:5060\"\n", "lisen"),
        (
            "[media]\nrtp_port_min = 30000\nrtp_port_max = 20000\n",
            "media.rtp_port_min",
        ),
        (
            "[registrar]\nmin_expires_s = 100\nmax_expires_s = 50\n",
            "registrar.min_expires_s",
        ),
    ] {
        let (ok, text) = check(config);
        assert!(!ok, "{config} was accepted");
        assert!(text.contains(key), "{key} not named in: {text}");
    }
}

#[test]
fn run_refuses_a_bad_configuration_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[sip]\nmax_calls = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_calls"));
}
