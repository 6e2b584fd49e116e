//! `errors = "text" | "problem"` on `[server]` and on routes: the body format of the
//! gateway's own 4xx/5xx answers.

use toml::Spanned;

use super::Ctx;
use crate::config::ErrorFormat;

/// The format `value` names (`None` when absent or wrong; a wrong one is a problem at `key`).
pub(super) fn format(
    cx: &mut Ctx<'_>,
    key: &str,
    value: Option<&Spanned<String>>,
) -> Option<ErrorFormat> {
    let value = value?;
    match value.get_ref().as_str() {
        "text" => Some(ErrorFormat::Text),
        "problem" => Some(ErrorFormat::Problem),
        other => {
            let message = format!(
                "unknown error format `{other}`: expected \"text\" or \"problem\" \
                 (RFC 9457 application/problem+json)"
            );
            cx.problem(key, Some(value.span()), message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::ErrorFormat;

    #[test]
    fn reads_the_server_and_route_formats() {
        let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nerrors = \"problem\"\n\
                    [[routes]]\nname = \"a\"\nrespond = { status = 200 }\nerrors = \"text\"\n\
                    [[routes]]\nname = \"b\"\nmatch = { path_prefix = \"/b\" }\nrespond = { status = 200 }\n";
        let snapshot = crate::config::load_str(text, "t.toml").expect("compiles");
        assert_eq!(snapshot.server.errors, ErrorFormat::Problem);
        let errors: Vec<_> = (0..2)
            .map(|i| snapshot.router.get(i).expect("route").errors)
            .collect();
        assert_eq!(errors, [Some(ErrorFormat::Text), None]);
    }

    #[test]
    fn rejects_an_unknown_format_with_its_line() {
        let text = "[server]\nerrors = \"html\"\n\
                    [[routes]]\nname = \"a\"\nrespond = { status = 200 }\nerrors = \"json\"\n";
        assert_eq!(
            keys_and_lines(&check_without_router(text)),
            vec![
                ("server.errors".to_string(), Some(2)),
                ("routes[0].errors".to_string(), Some(6)),
            ]
        );
    }
}
