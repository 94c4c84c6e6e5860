//! The kubelet's `$(VAR)` expansion, for container commands, args, env values and subPathExpr.
//!
//! Owns exactly the semantics of Kubernetes' `third_party/forked/golang/expansion`: `$(NAME)`
//! is replaced by the value of NAME when it is known and left as written when it is not, `$$`
//! is an escaped `$`, a `$` followed by anything else (or by nothing) is kept, an unterminated
//! `$(` is kept, and a replaced value is never expanded again. It must not know where the
//! variables come from; callers pass a lookup.

/// Expands `$(NAME)` references in `input` with `lookup`; see the module docs for the rules.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        // `$` is ASCII, so `cursor + 1` is a char boundary whenever this matches.
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match read_reference(rest) {
                Reference::Escaped => {
                    out.push('$');
                    1
                }
                Reference::Name(name) => {
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    name.len() + 2
                }
                Reference::Unterminated => {
                    out.push_str("$(");
                    1
                }
                Reference::Other(c) => {
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            // `advance` bytes after the `$` were consumed.
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// [`expand`] with the variables of a resolved environment; a later duplicate wins, as in the
/// kubelet's `EnvVarsToMap`.
pub fn expand_env(input: &str, env: &[(String, String)]) -> String {
    expand(input, |name| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
}

/// What follows a `$`.
enum Reference<'a> {
    /// `$$`
    Escaped,
    /// `$(NAME)`
    Name(&'a str),
    /// `$(` without a closing `)`
    Unterminated,
    /// `$` and any other character
    Other(char),
}

/// Reads what follows a `$`; `rest` is not empty.
fn read_reference(rest: &str) -> Reference<'_> {
    let mut chars = rest.chars();
    match chars.next() {
        Some('$') => Reference::Escaped,
        Some('(') => match rest[1..].find(')') {
            Some(end) => Reference::Name(&rest[1..1 + end]),
            None => Reference::Unterminated,
        },
        Some(c) => Reference::Other(c),
        // Unreachable (rest is not empty); keeping the `$` is the harmless answer.
        None => Reference::Other('\0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars() -> HashMap<&'static str, &'static str> {
        [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]
        .into_iter()
        .collect()
    }

    /// The cases of the kubelet's `third_party/forked/golang/expansion/expand_test.go`.
    #[test]
    fn kubelet_expansion_table() {
        let vars = vars();
        let cases: &[(&str, &str, &str)] = &[
            ("whole string", "$(VAR_A)", "A"),
            ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
            ("beginning", "$(VAR_A)-1", "A-1"),
            ("middle", "___$(VAR_B)___", "___B___"),
            ("end", "___$(VAR_C)", "___C"),
            ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("escape & expand", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            (
                "compound escape",
                "$$(VAR_A)_$$(VAR_B)",
                "$(VAR_A)_$(VAR_B)",
            ),
            ("mixed in escapes", "f000-$$VAR_A", "f000-$VAR_A"),
            ("backslash escape ignored", "foo\\$(VAR_C)bar", "foo\\Cbar"),
            (
                "backslash escape ignored 2",
                "foo\\\\$(VAR_C)bar",
                "foo\\\\Cbar",
            ),
            (
                "lots of backslashes",
                "foo\\\\\\\\$(VAR_A)bar",
                "foo\\\\\\\\Abar",
            ),
            (
                "nested var references",
                "$(VAR_A$(VAR_B))",
                "$(VAR_A$(VAR_B))",
            ),
            (
                "nested var references second type",
                "$(VAR_A$(VAR_B)",
                "$(VAR_A$(VAR_B)",
            ),
            ("value is a reference", "$(VAR_REF)", "$(VAR_A)"),
            (
                "value is a reference x 2",
                "%%$(VAR_REF)--$(VAR_REF)%%",
                "%%$(VAR_A)--$(VAR_A)%%",
            ),
            ("empty var", "foo$(VAR_EMPTY)bar", "foobar"),
            (
                "unterminated expression",
                "foo$(VAR_Awhoops!",
                "foo$(VAR_Awhoops!",
            ),
            (
                "expression without operator",
                "f00__(VAR_A)__",
                "f00__(VAR_A)__",
            ),
            ("shell special vars pass through", "$?_boo_$!", "$?_boo_$!"),
            ("bare operators are ignored", "$VAR_A", "$VAR_A"),
            (
                "undefined vars are passed through",
                "$(VAR_DNE)",
                "$(VAR_DNE)",
            ),
            (
                "multiple (even) operators, var undefined",
                "$$$$$$(BIG_MONEY)",
                "$$$(BIG_MONEY)",
            ),
            (
                "multiple (even) operators, var defined",
                "$$$$$$(VAR_A)",
                "$$$(VAR_A)",
            ),
            (
                "multiple (odd) operators, var undefined",
                "$$$$$$$(GOOD_ODDS)",
                "$$$$(GOOD_ODDS)",
            ),
            (
                "multiple (odd) operators, var defined",
                "$$$$$$$(VAR_A)",
                "$$$A",
            ),
            ("missing open expression", "$VAR_A)", "$VAR_A)"),
            ("shell syntax ignored", "${VAR_A}", "${VAR_A}"),
            (
                "trailing incomplete expression not consumed",
                "$(VAR_B)_______$(A",
                "B_______$(A",
            ),
            (
                "trailing incomplete expression, no content, is not consumed",
                "$(VAR_C)_______$(",
                "C_______$(",
            ),
            (
                "operator at end of input string is preserved",
                "$(VAR_A)foobarzab$",
                "Afoobarzab$",
            ),
            (
                "shell escaped incomplete expr",
                "foo-\\$(VAR_A",
                "foo-\\$(VAR_A",
            ),
            ("lots of $( in middle", "--$($($($($--", "--$($($($($--"),
            (
                "lots of $( in beginning",
                "$($($($($--foo$(",
                "$($($($($--foo$(",
            ),
            ("lots of $( at end", "foo0--$($($($(", "foo0--$($($($("),
            (
                "escaped operators in variable names are not escaped",
                "$(foo$$var)",
                "$(foo$$var)",
            ),
            ("newline not expanded", "\n", "\n"),
        ];
        for (name, input, want) in cases {
            let got = expand(input, |n| vars.get(n).copied());
            assert_eq!(&got, want, "{name}: expand({input:?})");
        }
    }

    #[test]
    fn non_ascii_text_around_references_is_kept() {
        let vars = vars();
        assert_eq!(
            expand("ü$(VAR_A)é$ñ$(日本)", |n| vars.get(n).copied()),
            "üAé$ñ$(日本)"
        );
        assert_eq!(expand("$é", |_| None), "$é");
        assert_eq!(expand("", |_| None), "");
        assert_eq!(expand("$", |_| None), "$");
    }

    #[test]
    fn env_expansion_uses_the_last_duplicate() {
        let env = vec![
            ("A".to_string(), "first".to_string()),
            ("B".to_string(), "b".to_string()),
            ("A".to_string(), "second".to_string()),
        ];
        assert_eq!(expand_env("$(A)-$(B)-$(C)", &env), "second-b-$(C)");
    }
}
