//! `taskd-chaos --help` names every nemesis and every `--break` mode, as
//! clap's `[possible values: …]` lists (the contract for the CLI).

use clap::ValueEnum;
use taskd_chaos::nemesis::Nemesis;
use taskd_chaos::run::BreakMode;

fn names<T: ValueEnum>() -> Vec<String> {
    T::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect()
}

/// The help text lists each value of both enums, in one `[possible values: …]` list each.
#[test]
fn help_lists_every_nemesis_and_break_mode() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taskd-chaos"))
        .arg("--help")
        .output()
        .expect("taskd-chaos --help runs");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let lists: Vec<&str> = help
        .split("[possible values: ")
        .skip(1)
        .map(|rest| rest.split(']').next().unwrap_or(""))
        .collect();
    for (what, expected) in [
        ("nemesis", names::<Nemesis>()),
        ("break", names::<BreakMode>()),
    ] {
        assert!(expected.len() >= 3, "{what}: {expected:?}");
        let wanted = expected.join(", ");
        assert!(
            lists.contains(&wanted.as_str()),
            "--help has no `[possible values: {wanted}]` for --{what}:\n{help}"
        );
    }
}
