//! Keyset scan pages shared by both stores: ids in byte order, the cursor
//! is the last id returned, so a scan never repeats an id.

use session_core::{Cursor, Page, SessionId};

/// Turns up to `limit + 1` fetched ids into a page (the extra row only
/// says that another page follows). A row whose id is not a valid session
/// id (written by someone else) is skipped and counted in
/// [`Page::skipped`]; the cursor is the last row's raw id, so the next
/// page starts after it either way and one bad row never stops a scan.
pub(crate) fn page(mut rows: Vec<String>, limit: usize, table: &str) -> Page {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|id| Cursor::new(id.as_str()))
    } else {
        None
    };
    let ids: Vec<SessionId> = rows
        .iter()
        .filter_map(|s| SessionId::parse(s).ok())
        .collect();
    let skipped = rows.len() - ids.len();
    if skipped > 0 {
        tracing::warn!(
            table,
            skipped,
            "scan skipped rows whose id is not a valid session id"
        );
    }
    Page { ids, next, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ids_are_skipped_counted_and_passed() {
        let rows = vec!["a".to_owned(), "bad id".to_owned(), "c".to_owned()];
        let p = page(rows, 2, "t");
        assert_eq!(p.ids, vec![SessionId::parse("a").unwrap()]);
        assert_eq!(p.skipped, 1);
        assert_eq!(p.next.unwrap().as_str(), "bad id");
        let p = page(vec!["bad id".to_owned()], 5, "t");
        assert!(p.ids.is_empty() && p.next.is_none());
        assert_eq!(p.skipped, 1);
    }
}
