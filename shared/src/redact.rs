//! URLs made safe to print.
//!
//! * Connection URLs ([`url()`]: logs, `Debug` of the settings): the password
//!   of the userinfo and any `password` / `sslpassword` query parameter
//!   (libpq accepts both) become `***`; user, host, port, path and the
//!   other parameters stay, since they are what one debugs with.
//! * Callback URLs ([`callback_url`]: every log line and API field about a
//!   webhook): scheme, host, port and path only. A client's URL may carry
//!   anything in its userinfo, query or fragment (`?token=`), and its
//!   parameters mean nothing to us, so none of them is shown.

/// Query parameters that carry a secret in a libpq or AMQP URL.
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// `text` with its secrets replaced by `***`. Text that is not a URL is not
/// printed at all: it may be a whole secret.
pub fn url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    // The userinfo ends at the last '@': a password with a raw '/', '?' or
    // '@' in it is then hidden whole rather than cut in two.
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    match after.split_once('?') {
        None => out.push_str(after),
        Some((location, query)) => {
            out.push_str(location);
            out.push('?');
            let parameters: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if SECRET_PARAMETERS.contains(&key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&parameters.join("&"));
        }
    }
    out
}

/// A callback URL as `scheme://host:port/path`: no userinfo, query or
/// fragment. Text that is not a URL is not printed at all.
pub fn callback_url(text: &str) -> String {
    let Ok(url) = ::url::Url::parse(text) else {
        return "<unparseable url>".to_owned();
    };
    let Some(host) = url.host_str() else {
        return format!("{}:<no host>", url.scheme());
    };
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            url("amqp://user:secret@host:5672/%2f"),
            "amqp://user:***@host:5672/%2f"
        );
        assert_eq!(
            url(
                "postgres://app:pw@db:5432/pipeline?sslmode=verify-full&password=pw2&sslpassword=k"
            ),
            "postgres://app:***@db:5432/pipeline?sslmode=verify-full&password=***&sslpassword=***"
        );
        assert_eq!(url("postgres://db/pipeline"), "postgres://db/pipeline");
        assert_eq!(url("postgres://root@db/x"), "postgres://root@db/x");
        // A raw '/', '?' or '@' in the password is hidden whole.
        assert_eq!(url("amqps://u:a/b?c@d@host/v"), "amqps://u:***@host/v");
        assert_eq!(url("not a url"), "<unparseable url>");
    }

    #[test]
    fn callback_urls_show_only_scheme_host_port_and_path() {
        assert_eq!(
            callback_url("http://user:pw@127.0.0.1:8080/hook/a?token=s3cret&x=1#frag"),
            "http://127.0.0.1:8080/hook/a"
        );
        assert_eq!(
            callback_url("https://only-user@Example.com/h?k=v"),
            "https://example.com:443/h"
        );
        assert_eq!(callback_url("http://[::1]/"), "http://[::1]:80/");
        assert_eq!(callback_url("not a url?token=x"), "<unparseable url>");
    }
}
