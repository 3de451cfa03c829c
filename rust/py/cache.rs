//! Python objects the bindings use on every call, imported once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

macro_rules! cached {
    ($(#[$doc:meta])* $fn:ident: $ty:ty = $module:literal . $name:literal) => {
        $(#[$doc])*
        pub(crate) fn $fn(py: Python<'_>) -> PyResult<&Bound<'_, $ty>> {
            static CELL: PyOnceLock<Py<$ty>> = PyOnceLock::new();
            CELL.import(py, $module, $name)
        }
    };
}

cached!(
    /// `replaycore.types.Scope`.
    scope_type: PyType = "replaycore.types"."Scope"
);
cached!(
    /// `replaycore.types.PutOutcome`.
    put_outcome_type: PyType = "replaycore.types"."PutOutcome"
);
cached!(
    /// `replaycore.types.StoreStats`.
    store_stats_type: PyType = "replaycore.types"."StoreStats"
);
cached!(
    /// `msgspec.Struct`, the base of every record.
    struct_type: PyType = "msgspec"."Struct"
);
cached!(
    /// `msgspec.msgpack.Decoder`.
    decoder_type: PyType = "msgspec.msgpack"."Decoder"
);
cached!(
    /// `replaycore.records.encode_canonical`.
    encode_canonical: PyAny = "replaycore.records"."encode_canonical"
);
cached!(
    /// `replaycore.records.encode_json`.
    encode_json: PyAny = "replaycore.records"."encode_json"
);
cached!(
    /// `replaycore.records.differing_fields`.
    differing_fields: PyAny = "replaycore.records"."differing_fields"
);
cached!(
    /// `replaycore.records.JournalRecord`.
    journal_record_type: PyType = "replaycore.records"."JournalRecord"
);
cached!(
    /// `replaycore.records.Checkpoint`.
    checkpoint_type: PyType = "replaycore.records"."Checkpoint"
);
cached!(
    /// `replaycore.records.OutputReconciliation`.
    output_reconciliation_type: PyType = "replaycore.records"."OutputReconciliation"
);
cached!(
    /// `replaycore.results.ReplayResult`.
    replay_result_type: PyType = "replaycore.results"."ReplayResult"
);
cached!(
    /// `replaycore.results.RepairNeeded`.
    repair_needed_type: PyType = "replaycore.results"."RepairNeeded"
);
cached!(
    /// `replaycore.results.PendingEffect`.
    pending_effect_type: PyType = "replaycore.results"."PendingEffect"
);
cached!(
    /// `replaycore.results.StreamScope`.
    stream_scope_type: PyType = "replaycore.results"."StreamScope"
);
cached!(
    /// `replaycore.results.EventCursor`.
    event_cursor_type: PyType = "replaycore.results"."EventCursor"
);
