//! What one published cycle holds ([`CycleState`]): every family's series in groups by
//! source query, each group's staleness, the label tables the next cycle reuses, and the
//! exposition text rendered piece by piece ([`TextChunks`]); and the cycle's inputs, the
//! batched query answers ([`QueryResults`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::device::Vendor;
use crate::query_client::{QueryData, QueryError, QueryOutput, Sample};

use super::exposition::{self, Family, Point};
use super::labels::LabelSet;
use super::queries::CycleQuery;

/// What fed a group of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Only the snapshot: always current.
    Inventory,
    Query(CycleQuery),
}

/// One successful instant-vector answer, shared with the query client rather than copied
/// (at 10,000 GPUs a cycle's answers hold ~170,000 samples).
#[derive(Debug, Clone)]
pub struct VectorAnswer(Arc<QueryOutput>);

impl VectorAnswer {
    /// The answer if it is an instant vector.
    pub fn new(output: Arc<QueryOutput>) -> Option<Self> {
        matches!(output.data, QueryData::Vector(_)).then_some(Self(output))
    }

    pub fn samples(&self) -> &[Sample] {
        match &self.0.data {
            QueryData::Vector(samples) => samples,
            _ => &[],
        }
    }
}

impl From<Vec<Sample>> for VectorAnswer {
    fn from(samples: Vec<Sample>) -> Self {
        Self(Arc::new(QueryOutput {
            data: QueryData::Vector(samples),
            warnings: Vec::new(),
        }))
    }
}

/// The outcome of each query of a cycle: its vector samples, or failure.
pub type QueryResults = HashMap<CycleQuery, Result<VectorAnswer, CycleQueryError>>;

/// Why a cycle query gave no samples to build from; its families are then carried over
/// (`exporter.stale_cycles`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CycleQueryError {
    /// The store, or the way to it, failed.
    #[error(transparent)]
    Store(#[from] QueryError),
    /// The store answered, but not with an instant vector.
    #[error("the answer is not an instant vector")]
    NotAVector,
    /// The cycle's deadline passed before the answer came.
    #[error("no answer before the cycle's deadline")]
    Deadline,
    /// The query client is gone (the system is stopping).
    #[error("the query client is not running")]
    ClientGone,
}

pub(super) fn samples(results: &QueryResults, query: CycleQuery) -> Option<&[Sample]> {
    results
        .get(&query)?
        .as_ref()
        .ok()
        .map(VectorAnswer::samples)
}

/// `(driver_version, device_no)` per device uuid.
pub(super) type InfoLabels = HashMap<String, (String, String)>;
/// Info labels per vendor, with the cycles since they were last refreshed.
pub(super) type InfoCache = HashMap<Vendor, (Arc<InfoLabels>, u32)>;

/// Series of one (family, source), and for how many cycles they have been carried over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesGroup {
    pub points: Arc<[Point]>,
    pub stale_for: u32,
    /// The points are strictly increasing by label values (sorted, no duplicates), as the
    /// device and allocation loops emit them; the exposition then needs no sorting.
    pub in_label_order: bool,
}

/// The label sets of a cycle and their label order, kept for the next one to reuse.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct LabelTables {
    /// Per device, by flat index.
    pub(super) devices: Vec<Option<Arc<LabelSet>>>,
    pub(super) devices_order: LabelOrder,
    /// Per (container, device) allocation entry, in snapshot order.
    pub(super) containers: Vec<Option<Arc<LabelSet>>>,
    pub(super) containers_order: LabelOrder,
}

/// Positions of a table's label sets sorted by their first `n` values (stable), and whether
/// no two are equal. Depends only on the sets, so it is reused while they are the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct LabelOrder {
    pub(super) positions: Vec<usize>,
    pub(super) distinct: bool,
}

impl LabelOrder {
    pub(super) fn of(
        sets: &[Option<Arc<LabelSet>>],
        n: usize,
        previous: &LabelTablesView<'_>,
    ) -> Self {
        let same = sets.len() == previous.sets.len()
            && sets.iter().zip(previous.sets).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            });
        if same {
            return previous.order.clone();
        }
        let mut positions: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].is_some()).collect();
        let cmp = |a: usize, b: usize| match (&sets[a], &sets[b]) {
            (Some(a), Some(b)) => a.cmp_values(b, n),
            _ => std::cmp::Ordering::Equal,
        };
        positions.sort_by(|&a, &b| cmp(a, b));
        let distinct = positions
            .windows(2)
            .all(|w| cmp(w[0], w[1]) == std::cmp::Ordering::Less);
        Self {
            positions,
            distinct,
        }
    }
}

/// The previous cycle's table and order, for [`LabelOrder::of`].
pub(super) struct LabelTablesView<'a> {
    pub(super) sets: &'a [Option<Arc<LabelSet>>],
    pub(super) order: &'a LabelOrder,
}

/// Everything one published cycle holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleState {
    pub groups: BTreeMap<(Family, Source), SeriesGroup>,
    /// Each non-empty family's series in exposition order (sorted, without duplicates);
    /// shares the group's points when one group feeds the family.
    pub(super) families: Vec<(Family, Arc<[Point]>)>,
    /// Last known `(driver_version, device_no)` per device uuid, with the cycles since the
    /// info query last succeeded for its vendor; keeps series identities stable when only
    /// the info query fails.
    pub(super) info: InfoCache,
    pub(super) labels: LabelTables,
}

impl CycleState {
    pub fn series_count(&self) -> usize {
        self.groups.values().map(|g| g.points.len()).sum()
    }

    /// The non-empty families in exposition order, each with its series in order.
    pub fn families(&self) -> &[(Family, Arc<[Point]>)] {
        &self.families
    }

    /// The exposition text of this state.
    pub fn render(&self) -> String {
        exposition::render(self.families.iter().map(|(f, p)| (*f, &p[..])))
    }

    /// The exposition text in pieces of about `chunk` bytes, rendered as they are asked for.
    pub fn text_chunks(self: Arc<Self>, chunk: usize) -> TextChunks {
        TextChunks {
            state: self,
            family: 0,
            point: 0,
            header_done: false,
            chunk: chunk.max(1),
        }
    }
}

/// Iterator over a state's exposition text, piece by piece: what a plain scrape streams, so
/// that the text (~100 MB at 10,000 GPUs) is never held whole.
pub struct TextChunks {
    pub(super) state: Arc<CycleState>,
    pub(super) family: usize,
    pub(super) point: usize,
    pub(super) header_done: bool,
    pub(super) chunk: usize,
}

impl Iterator for TextChunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.chunk + 4096);
        while out.len() < self.chunk {
            let Some((family, points)) = self.state.families.get(self.family) else {
                break;
            };
            if !self.header_done {
                if !points.is_empty() {
                    exposition::write_header(&mut out, *family);
                }
                self.header_done = true;
            }
            while self.point < points.len() && out.len() < self.chunk {
                let stop = (self.point + 256).min(points.len());
                exposition::write_points(&mut out, *family, &points[self.point..stop]);
                self.point = stop;
            }
            if self.point >= points.len() {
                self.family += 1;
                self.point = 0;
                self.header_done = false;
            }
        }
        (!out.is_empty()).then_some(out)
    }
}
