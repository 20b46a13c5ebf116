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

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use hyper::HeaderMap;
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
        secret: &str,
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
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = [self.date, self.region, self.service, "aws4_request"]
            .iter()
            .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
                hmac(&key, part.as_bytes())
            });
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

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
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

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` when
/// `keep_slash`), as SigV4 encodes.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

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
    // Services other than S3 encode the (already encoded) path once more.
    let uri = uri_encode(path, true);
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_decode(s).map_err(|_| {
                    SigError::Malformed(format!("the query string {query:?} is not valid"))
                })
            };
            Ok((
                uri_encode(&decode(k)?, false),
                uri_encode(&decode(v)?, false),
            ))
        })
        .collect::<Result<_, SigError>>()?;
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                let v = String::from_utf8_lossy(v.as_bytes());
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed(format!(
                "the signed header {name:?} is not in the request"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = hex::encode(Sha256::digest(body));
    Ok(format!(
        "{method}\n{uri}\n{query}\n{canonical_headers}\n{}\n{payload}",
        signed.join(";")
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own worked example ("get-vanilla" of the SigV4 test suite).
    #[test]
    fn aws_test_suite_vanilla_get() {
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
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        auth.verify(secret, "GET", "/", &headers, b"", at).unwrap();
        assert_eq!(
            auth.verify("wrong", "GET", "/", &headers, b"", at),
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
