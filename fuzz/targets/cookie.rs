//! The `Cookie` header lookup used by version rules and sticky splits: no panic; a value
//! found is a slice of the header that contains no `;` and is preceded by the name and `=`
//! (spaces aside); a sticky pick on any key lands on one of the split's groups.

use ringgate::config::UpstreamId;
use ringgate::traffic::{cookie_value, Split};

pub fn run(data: &[u8]) {
    // The first byte chooses the name's length; the rest is the name and the header value.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (name, header) = rest.split_at(n);
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    if let Some(value) = cookie_value(header, name) {
        assert!(!value.contains(&b';'));
        let start = value.as_ptr() as usize - header.as_ptr() as usize;
        assert!(start + value.len() <= header.len());
        assert_eq!(
            header[..start]
                .iter()
                .rev()
                .find(|b| **b != b' ' && **b != b'\t'),
            Some(&b'=')
        );
    }
    let split = Split::new(&[(UpstreamId(0), 3), (UpstreamId(1), 1)], None, 0);
    if let Some(split) = split {
        assert!(split.pick_for_key(header).0 <= 1);
    }
}
