//! Signature Version 4, verified: who signed a JSON-protocol request (DynamoDB, KMS,
//! CloudWatch Logs), and whether the signature is theirs.
//!
//! S3 requests are verified by `s3s`, which accepts only the `s3` and `sts` scopes; the other
//! protocols sign their headers and body in the same scheme ([AWS's
//! description](https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)),
//! checked here: the canonical request is rebuilt from the request as received, the signing
//! key derived from the secret of the access key it names, and the signatures compared in
//! constant time. A request dated more than 15 minutes from now is refused (as AWS does), so
//! a captured request cannot be replayed later.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use mvi_core::SecretString;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How far a request's date may be from now.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's signature was not accepted, in AWS's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// No `Authorization` header (or not SigV4).
    Missing,
    /// The header is not SigV4's shape, or names another service.
    Malformed(String),
    /// The access key is not one the endpoints issued.
    UnknownKey,
    /// The signature does not match, or the date is too far from now.
    Invalid(String),
}

impl SigError {
    /// The error code and message AWS's JSON services answer with.
    pub(crate) fn code_and_message(&self) -> (&'static str, String) {
        match self {
            SigError::Missing => (
                "MissingAuthenticationTokenException",
                "Request is missing Authentication Token: sign requests (SigV4) with an \
                 access key of this endpoint"
                    .to_owned(),
            ),
            SigError::Malformed(m) => ("IncompleteSignatureException", m.clone()),
            SigError::UnknownKey => (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".to_owned(),
            ),
            SigError::Invalid(m) => ("InvalidSignatureException", m.clone()),
        }
    }
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug)]
pub(crate) struct Authorization<'a> {
    /// The access key id.
    pub(crate) key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses the header of `headers`, requiring the credential scope's service to be
    /// `service`.
    pub(crate) fn parse(headers: &'a HeaderMap, service: &str) -> Result<Self, SigError> {
        let value = headers
            .get(hyper::header::AUTHORIZATION)
            .ok_or(SigError::Missing)?
            .to_str()
            .map_err(|_| SigError::Malformed("the Authorization header is not text".into()))?;
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or(SigError::Missing)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let missing = |what: &str| {
            SigError::Malformed(format!(
                "Authorization header requires '{what}' parameter. Authorization={value}"
            ))
        };
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [key_id, date, region, scope_service, "aws4_request"] = scope[..] else {
            return Err(SigError::Malformed(format!(
                "the credential {credential:?} is not KEY/DATE/REGION/SERVICE/aws4_request"
            )));
        };
        if scope_service != service {
            return Err(SigError::Malformed(format!(
                "Credential should be scoped to correct service: '{service}', not \
                 '{scope_service}'"
            )));
        }
        Ok(Authorization {
            key_id,
            date,
            region,
            service: scope_service,
            signed_headers: signed.split(';').collect(),
            signature,
        })
    }

    /// Checks the signature of a request with `method`, raw `path_and_query`, `headers` and
    /// `body`, made with `secret`, at `now`.
    pub(crate) fn verify(
        &self,
        secret: &SigningSecret,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), SigError> {
        let amz_date = header(headers, "x-amz-date")
            .ok_or_else(|| SigError::Malformed("the request has no X-Amz-Date header".into()))?;
        check_date(amz_date, self.date, now)?;
        if !self.signed_headers.contains(&"host") {
            return Err(SigError::Malformed(
                "the signed headers must include host".into(),
            ));
        }
        let canonical =
            canonical_request(method, path_and_query, headers, &self.signed_headers, body)?;
        let mut to_sign = String::with_capacity(160);
        let _ = write!(
            to_sign,
            "AWS4-HMAC-SHA256\n{amz_date}\n{}/{}/{}/aws4_request\n{:x}",
            self.date,
            self.region,
            self.service,
            Sha256::digest(canonical.as_bytes())
        );
        let key = secret.signing_key(self.date, self.region, self.service);
        let given = hex::decode(self.signature).map_err(|_| mismatch())?;
        let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| mismatch())?;
        mac.update(to_sign.as_bytes());
        mac.verify_slice(&given).map_err(|_| mismatch())
    }
}

fn mismatch() -> SigError {
    SigError::Invalid(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
            .into(),
    )
}

fn hmac(key: &[u8], data: &str) -> [u8; 32] {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().into()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a date that is not the scope's day or is more than [`MAX_SKEW`] from `now`.
fn check_date(amz_date: &str, scope_date: &str, now: SystemTime) -> Result<(), SigError> {
    let when = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            SigError::Malformed(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
        })?
        .and_utc();
    if !amz_date.starts_with(scope_date) {
        return Err(SigError::Invalid(format!(
            "the credential's date {scope_date} is not the request's date {amz_date}"
        )));
    }
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    let skew = (now - when).abs();
    if skew.to_std().unwrap_or(Duration::MAX) > MAX_SKEW {
        return Err(SigError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            (now - chrono::Duration::minutes(15)).format("%Y%m%dT%H%M%SZ"),
            now.format("%Y%m%dT%H%M%SZ")
        )));
    }
    Ok(())
}

/// Appends the RFC 3986 percent-encoding of `s` to `out`: everything but the unreserved
/// characters (and `/` when `keep_slash`) encoded, as SigV4 encodes.
fn uri_encode(out: &mut String, s: &str, keep_slash: bool) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The canonical request SigV4 signs, built in one string.
fn canonical_request(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    signed: &[&str],
    body: &[u8],
) -> Result<String, SigError> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let path = if path.is_empty() { "/" } else { path };
    let mut out = String::with_capacity(256 + path_and_query.len());
    out.push_str(method);
    out.push('\n');
    // Services other than S3 encode the (already encoded) path once more.
    uri_encode(&mut out, path, true);
    out.push('\n');
    if !query.is_empty() {
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let encoded = |s: &str| {
                    let decoded = percent_decode(s).map_err(|_| {
                        SigError::Malformed(format!("the query string {query:?} is not valid"))
                    })?;
                    let mut e = String::with_capacity(decoded.len());
                    uri_encode(&mut e, &decoded, false);
                    Ok(e)
                };
                Ok((encoded(k)?, encoded(v)?))
            })
            .collect::<Result<_, SigError>>()?;
        pairs.sort();
        push_joined(&mut out, &pairs, '&', |out, (k, v)| {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        });
    }
    out.push('\n');
    for name in signed {
        out.push_str(name);
        out.push(':');
        let mut values = headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(SigError::Malformed(format!(
                "the signed header {name:?} is not in the request"
            )));
        }
        push_joined(&mut out, values, ',', |out, value| {
            // Trimmed, with runs of spaces inside made one.
            let value = String::from_utf8_lossy(value.as_bytes());
            push_joined(out, value.split_whitespace(), ' ', String::push_str);
        });
        out.push('\n');
    }
    out.push('\n');
    push_joined(&mut out, signed, ';', |out, name| out.push_str(name));
    let _ = write!(out, "\n{:x}", Sha256::digest(body));
    Ok(out)
}

/// Appends each of `parts` to `out`, written by `write`, with `sep` between them.
fn push_joined<T>(
    out: &mut String,
    parts: impl IntoIterator<Item = T>,
    sep: char,
    mut write: impl FnMut(&mut String, T),
) {
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        write(out, part);
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or(())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// A secret access key, with the signing key last derived from it.
///
/// A SigV4 signing key is four HMACs of the secret and the credential scope (day, region,
/// service), so it stays the same for a key's requests all day; deriving it anew for each
/// request would be most of a verification's hashing.
pub(crate) struct SigningSecret {
    secret: SecretString,
    derived: Mutex<Option<Derived>>,
}

/// A signing key and the scope it was derived for.
struct Derived {
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

impl SigningSecret {
    pub(crate) fn new(secret: SecretString) -> Self {
        SigningSecret {
            secret,
            derived: Mutex::new(None),
        }
    }

    /// The secret itself (for `s3s`, which verifies S3's signatures).
    pub(crate) fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// The signing key of `date`, `region` and `service`.
    fn signing_key(&self, date: &str, region: &str, service: &str) -> [u8; 32] {
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = derived.as_ref()
            && (d.date.as_str(), d.region.as_str(), d.service.as_str()) == (date, region, service)
        {
            return d.key;
        }
        let mut key = hmac(format!("AWS4{}", self.secret.expose()).as_bytes(), date);
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part);
        }
        *derived = Some(Derived {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            key,
        });
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing_secret(secret: &str) -> SigningSecret {
        SigningSecret::new(SecretString::new(secret))
    }

    /// A request signed by botocore (as boto3 sends it), with a query string to sort and
    /// encode, a path to encode again, a header with runs of spaces and a body; then the same
    /// secret, with its signing key derived for that scope, on another day's request.
    #[test]
    fn botocore_signed_request_with_query_path_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:4566".parse().unwrap());
        headers.insert("x-amz-target", "DynamoDB_20120810.PutItem".parse().unwrap());
        headers.insert("x-custom", "  two   spaced  words ".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-amz-json-1.0".parse().unwrap(),
        );
        headers.insert("x-amz-date", "20261207T111147Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/eu-west-1/dynamodb/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-custom, \
             Signature=2f52a1568e406fb88a021cd63d2e90ac968063d17e4b6300e5db41957a5ec09b"
                .parse()
                .unwrap(),
        );
        let body = br#"{"TableName":"t"}"#;
        let path = "/some%20path/x?b=2&a=1&c=%2F%20x";
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_641_907);
        let secret = signing_secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let auth = Authorization::parse(&headers, "dynamodb").unwrap();
        auth.verify(&secret, "POST", path, &headers, body, at)
            .unwrap();
        // The query is signed sorted: the same pairs in another order are the same request.
        let reordered = "/some%20path/x?c=%2F%20x&a=1&b=2";
        auth.verify(&secret, "POST", reordered, &headers, body, at)
            .unwrap();
        let changed = "/some%20path/x?a=1&b=3&c=%2F%20x";
        assert_eq!(
            auth.verify(&secret, "POST", changed, &headers, body, at),
            Err(mismatch())
        );
        // The AWS suite's example is of another day, region and service, with the same
        // secret: the key derived above must not be reused for it.
        vanilla_get(&secret);
    }

    /// AWS's own worked example ("get-vanilla" of the SigV4 test suite).
    #[test]
    fn aws_test_suite_vanilla_get() {
        vanilla_get(&signing_secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"));
    }

    /// Checks AWS's example with `secret`, the example's secret.
    fn vanilla_get(secret: &SigningSecret) {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        let auth = Authorization::parse(&headers, "service").unwrap();
        assert_eq!(auth.key_id, "AKIDEXAMPLE");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        auth.verify(secret, "GET", "/", &headers, b"", at).unwrap();
        // Again, with the signing key derived by the first.
        auth.verify(secret, "GET", "/", &headers, b"", at).unwrap();
        assert_eq!(
            auth.verify(&signing_secret("wrong"), "GET", "/", &headers, b"", at),
            Err(mismatch())
        );
        assert_eq!(
            auth.verify(secret, "GET", "/", &headers, b"tampered", at),
            Err(mismatch())
        );
        let later = at + Duration::from_secs(16 * 60);
        assert!(matches!(
            auth.verify(secret, "GET", "/", &headers, b"", later),
            Err(SigError::Invalid(m)) if m.contains("expired")
        ));
        assert!(matches!(
            Authorization::parse(&headers, "dynamodb"),
            Err(SigError::Malformed(m)) if m.contains("'dynamodb'")
        ));
        assert_eq!(
            Authorization::parse(&HeaderMap::new(), "service").unwrap_err(),
            SigError::Missing
        );
    }
}
