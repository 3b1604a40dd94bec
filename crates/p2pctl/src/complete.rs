//! Shell completion scripts for p2pctl: clap's, plus user names from the
//! daemon for the commands that take one (`connect`, `send`, `accept`,
//! `reject`, `disconnect`, `chat`). The scripts get the names by running
//! the hidden `p2pctl __users`, which prints nothing when no daemon answers.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The subcommands whose first argument is a user name.
const USER_COMMANDS: &str = "connect send accept reject disconnect chat";

/// bash: clap's function still does everything except the user name after
/// one of [`USER_COMMANDS`].
const BASH_USERS: &str = r#"
_p2pctl_with_users() {
    local cur="${COMP_WORDS[COMP_CWORD]}" i sub="" at=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --socket) ((i++)) ;;
            -*) ;;
            *) sub="${COMP_WORDS[i]}"; at=$i; break ;;
        esac
    done
    if [[ -n "$sub" && $COMP_CWORD -eq $((at + 1)) && "$cur" != -* \
          && " USER_COMMANDS " == *" $sub "* ]]; then
        COMPREPLY=( $(compgen -W "$(p2pctl __users 2>/dev/null)" -- "$cur") )
        return 0
    fi
    _p2pctl "$@"
}
complete -F _p2pctl_with_users -o bashdefault -o default p2pctl
"#;

/// zsh: a completer named in place of clap's `_default` for `user`.
const ZSH_USERS: &str = r#"
_p2pctl_users() {
    local -a users
    users=(${(f)"$(p2pctl __users 2>/dev/null)"})
    compadd -a users
}
"#;

/// fish: the user name right after one of [`USER_COMMANDS`].
const FISH_USERS: &str = "
complete -c p2pctl -n '__fish_seen_subcommand_from USER_COMMANDS; and test (count (commandline -opc)) -eq 2' -f -a '(p2pctl __users 2>/dev/null)'
";

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "p2pctl", &mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let text = match shell {
        Shell::Bash => text + &BASH_USERS.replace("USER_COMMANDS", USER_COMMANDS),
        Shell::Fish => text + &FISH_USERS.replace("USER_COMMANDS", USER_COMMANDS),
        Shell::Zsh => {
            // Defined before clap's body runs (autoloaded or sourced).
            let text = text.replacen(
                "autoload -U is-at-least\n",
                &format!("autoload -U is-at-least\n{ZSH_USERS}"),
                1,
            );
            zsh_users(&text)
        }
        _ => text,
    };
    text.into_bytes()
}

/// Every `':user -- HELP:_default'` argument spec completes user names.
fn zsh_users(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("':user -- ") && l.contains(":_default'") {
                l.replacen(":_default'", ":_p2pctl_users'", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_asks_the_daemon_for_user_names() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = String::from_utf8(script(shell)).unwrap();
            assert!(s.contains("p2pctl __users"), "{shell}");
        }
        let zsh = String::from_utf8(script(Shell::Zsh)).unwrap();
        assert!(zsh.contains(":user -- Whom to ask:_p2pctl_users'"), "{zsh}");
        assert!(!zsh.contains(":user -- Whom to ask:_default'"));
        let bash = String::from_utf8(script(Shell::Bash)).unwrap();
        assert!(bash.contains("complete -F _p2pctl_with_users"));
    }
}
