//! The vMCP metadata conventions, as pure functions over [`Metadata`].
//!
//! - [`BACKEND_IDS`]: the session's backends, sorted, de-duplicated and
//!   comma-joined workload ids. Present once a session is active.
//! - [`BACKEND_SESSION_PREFIX`]`<workload>`: that backend's session id;
//!   present only when non-empty and only for listed workloads.
//! - [`IDENTITY_BINDING`]: see [`Binding`].
//!
//! ```
//! use session_core::{keys, Metadata, WorkloadId};
//!
//! let github = WorkloadId::parse("github")?;
//! let jira = WorkloadId::parse("jira")?;
//! let md = keys::with_backend(&Metadata::new(), &jira, "j-1")?;
//! let md = keys::with_backend(&md, &github, "")?; // no backend session id yet
//! assert_eq!(md.get(keys::BACKEND_IDS), Some("github,jira"));
//! assert_eq!(keys::backend_session(&md, &jira), Some("j-1"));
//! assert_eq!(keys::backend_session(&md, &github), None);
//! let md = keys::without_backend(&md, &jira)?;
//! assert_eq!(keys::backend_ids(&md)?, vec![github]);
//! keys::validate(&md)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::binding::Binding;
use crate::error::{InvalidInput, MetadataError};
use crate::id::WorkloadId;
use crate::metadata::Metadata;

/// Key of the comma-joined backend list.
pub const BACKEND_IDS: &str = "vmcp.backend.ids";
/// Prefix of the per-backend session id keys.
pub const BACKEND_SESSION_PREFIX: &str = "vmcp.backend.session.";
/// Key of the identity binding.
pub const IDENTITY_BINDING: &str = "vmcp.identity.binding";

// Every valid workload id fits in a backend-session key.
const _: () = assert!(
    BACKEND_SESSION_PREFIX.len() + crate::id::MAX_WORKLOAD_ID_LEN
        <= crate::metadata::limits::MAX_KEY_LEN
);

/// The metadata key holding `workload`'s backend session id.
pub fn backend_session_key(workload: &WorkloadId) -> String {
    format!("{BACKEND_SESSION_PREFIX}{workload}")
}

/// A broken vMCP metadata invariant, as reported by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invariant {
    /// An entry of `vmcp.backend.ids` is not a valid workload id.
    #[error("vmcp.backend.ids entry {entry:?} is not a workload id")]
    BackendIdInvalid {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: InvalidInput,
    },
    /// `vmcp.backend.ids` is not sorted or holds duplicates.
    #[error("vmcp.backend.ids is not sorted and de-duplicated")]
    BackendIdsUnsorted,
    /// A backend session key exists for a workload not in the list.
    #[error("backend session key for {workload:?} but the workload is not listed")]
    BackendSessionUnlisted {
        /// The workload named by the key.
        workload: String,
    },
    /// A backend session key holds an empty value.
    #[error("backend session key for {workload:?} is empty")]
    BackendSessionEmpty {
        /// The workload.
        workload: String,
    },
    /// The identity binding is in neither accepted form.
    #[error("vmcp.identity.binding is neither `unauthenticated` nor `issuer\\0subject`")]
    BindingMalformed,
}

/// The listed backends, in order. Absent list = no backends.
pub fn backend_ids(md: &Metadata) -> Result<Vec<WorkloadId>, Invariant> {
    let Some(list) = md.get(BACKEND_IDS) else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let ids = list
        .split(',')
        .map(|entry| {
            WorkloadId::parse(entry).map_err(|source| Invariant::BackendIdInvalid {
                entry: entry.to_owned(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Invariant::BackendIdsUnsorted);
    }
    Ok(ids)
}

/// `workload`'s backend session id, if recorded.
pub fn backend_session<'a>(md: &'a Metadata, workload: &WorkloadId) -> Option<&'a str> {
    md.get(&backend_session_key(workload))
}

/// The identity binding; `None` if absent or malformed.
pub fn binding(md: &Metadata) -> Option<Binding> {
    md.get(IDENTITY_BINDING).and_then(Binding::decode)
}

/// A new map bound to `binding`.
pub fn with_binding(md: &Metadata, binding: &Binding) -> Result<Metadata, MetadataError> {
    md.with(IDENTITY_BINDING, binding.encode())
}

/// Error from the list-editing helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRuleError {
    /// The input map already breaks an invariant.
    #[error("metadata breaks a vMCP invariant")]
    Invariant(#[from] Invariant),
    /// The result would break a metadata limit.
    #[error("metadata limit")]
    Metadata(#[from] MetadataError),
}

/// Adds (or replaces) `workload` with backend session id `session`; an empty
/// `session` lists the workload without a session key.
pub fn with_backend(
    md: &Metadata,
    workload: &WorkloadId,
    session: &str,
) -> Result<Metadata, KeyRuleError> {
    let mut ids = backend_ids(md)?;
    if let Err(pos) = ids.binary_search(workload) {
        ids.insert(pos, workload.clone());
    }
    let key = backend_session_key(workload);
    let set = std::iter::once((BACKEND_IDS.to_owned(), join(&ids)));
    Ok(if session.is_empty() {
        md.edit(set, [key.as_str()])?
    } else {
        md.edit(set.chain(std::iter::once((key, session.to_owned()))), [])?
    })
}

/// Removes `workload` and its session key. The list stays present (possibly
/// empty) so an active session keeps its `vmcp.backend.ids`.
pub fn without_backend(md: &Metadata, workload: &WorkloadId) -> Result<Metadata, KeyRuleError> {
    let mut ids = backend_ids(md)?;
    ids.retain(|w| w != workload);
    let key = backend_session_key(workload);
    Ok(md.edit([(BACKEND_IDS.to_owned(), join(&ids))], [key.as_str()])?)
}

fn join(ids: &[WorkloadId]) -> String {
    let mut out = String::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(id.as_str());
    }
    out
}

/// Checks every vMCP invariant and names the first broken one.
pub fn validate(md: &Metadata) -> Result<(), Invariant> {
    let ids = backend_ids(md)?;
    for key in md.keys_with_prefix(BACKEND_SESSION_PREFIX) {
        let workload = &key[BACKEND_SESSION_PREFIX.len()..];
        let listed = WorkloadId::parse(workload)
            .ok()
            .is_some_and(|w| ids.binary_search(&w).is_ok());
        if !listed {
            return Err(Invariant::BackendSessionUnlisted {
                workload: workload.to_owned(),
            });
        }
        if md.get(key).is_some_and(str::is_empty) {
            return Err(Invariant::BackendSessionEmpty {
                workload: workload.to_owned(),
            });
        }
    }
    if md.contains_key(IDENTITY_BINDING) && binding(md).is_none() {
        return Err(Invariant::BindingMalformed);
    }
    Ok(())
}
