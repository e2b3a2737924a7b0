//! The settings' defaults are declared once (`benchgen::settings::Settings::default`) and the help text of
//! `eval` and `generate` shows them; values outside a setting's list are refused at the command
//! line, naming the list.

use benchgen::settings::Settings;

use crate::common::*;

fn help(sub: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    ok(&benchgen(dir.path(), &[sub, "--help"]))
}

/// The help entry of `flag`: its line and the lines under it up to the next flag (clap puts a
/// flag's text on lines of its own when any flag's is long).
fn line(help: &str, flag: &str) -> String {
    let mut lines = help.lines().skip_while(|l| !l.trim_start().starts_with(flag));
    let first = lines.next().unwrap_or_else(|| panic!("{flag}: {help}"));
    let rest = lines.take_while(|l| !l.trim_start().starts_with('-') && !l.trim().is_empty());
    std::iter::once(first).chain(rest).map(str::trim).collect::<Vec<_>>().join(" ")
}

#[test]
fn help_shows_the_defaults_declared_in_one_place() {
    let defaults = Settings::default();
    let shown = [
        ("--device", defaults.device.to_string()),
        ("--dtype", defaults.dtype.to_string()),
        ("--batch-size", defaults.batch_size.to_string()),
        ("--seed", defaults.seed.to_string()),
        ("--kv-dtype", defaults.kv_dtype.name().to_string()),
    ];
    for sub in ["eval", "generate"] {
        let h = help(sub);
        for (flag, value) in &shown {
            let l = line(&h, flag);
            assert!(l.contains(&format!("[default: {value}]")), "{sub} {flag}: {l}");
        }
    }
    let eval = help("eval");
    let truncate = line(&eval, "--truncate");
    assert!(truncate.contains(&format!("[default: {}]", defaults.truncate.name())), "{truncate}");
    assert!(truncate.contains("[possible values: left, error]"), "{truncate}");
    assert!(line(&eval, "--dtype").contains("stored-exact"));
}

#[test]
fn values_outside_a_settings_list_are_refused_at_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["eval", "--kv-dtype", "f16"],
        ["eval", "--dtype", "int4"],
        ["generate", "--truncate", "x"],
    ] {
        let out = benchgen(dir.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("invalid value") || err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
    let out = benchgen(dir.path(), &["eval", "--kv-dtype", "f16"]);
    assert!(stderr(&out).contains("possible values: f32, bf16, int8"), "{}", stderr(&out));
    // Nothing was started.
    assert!(!dir.path().join("runs").exists());
}
