//! Keyset scan pages shared by both stores: ids in byte order, the cursor
//! is the last id returned, so a scan never repeats an id.

use session_core::{CorruptRecord, Cursor, Error, Page, Result, SessionId};

/// Turns up to `limit + 1` fetched ids into a page (the extra row only
/// says that another page follows).
pub(crate) fn page(mut rows: Vec<String>, limit: usize) -> Result<Page> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|id| Cursor::new(id.as_str()))
    } else {
        None
    };
    let ids = rows
        .iter()
        .map(|s| {
            SessionId::parse(s).map_err(|e| Error::corrupt(s.as_str(), CorruptRecord::InvalidId(e)))
        })
        .collect::<Result<_>>()?;
    Ok(Page { ids, next })
}
