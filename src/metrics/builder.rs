//! The two helpers every family builder of a cycle shares: [`Builder`], which accumulates
//! the points of one cycle per family and source, and [`LabelReuse`], which hands out the
//! previous cycle's label sets where the values are equal.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::exposition::{Family, Point};
use super::labels::LabelSet;
use super::readings::FastMap;
use super::{SeriesGroup, Source};

/// Accumulates the points of one cycle, per family then source.
pub(super) struct Builder {
    pub(super) groups: Vec<Vec<(Source, Vec<Point>, bool)>>,
    /// Whether points set now come in strictly increasing label order. Each group is fed by
    /// one loop only (device families by the device loop, container families by the
    /// allocation loop or the Metax full-GPU path), so a group stays ordered while this holds.
    pub(super) in_label_order: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            groups: vec![Vec::new(); Family::ALL.len()],
            in_label_order: false,
        }
    }
}

impl Builder {
    pub(super) fn set(
        &mut self,
        family: Family,
        source: Source,
        labels: &Arc<LabelSet>,
        value: f64,
    ) {
        let point = Point {
            labels: Arc::clone(labels),
            value,
        };
        let in_order = self.in_label_order;
        let Some(sources) = self.groups.get_mut(family as usize) else {
            return;
        };
        match sources.iter_mut().find(|(s, _, _)| *s == source) {
            Some((_, points, ordered)) => {
                points.push(point);
                *ordered &= in_order;
            }
            None => sources.push((source, vec![point], in_order)),
        }
    }

    pub(super) fn into_groups(self) -> BTreeMap<(Family, Source), SeriesGroup> {
        Family::ALL
            .into_iter()
            .zip(self.groups)
            .flat_map(|(family, sources)| {
                sources.into_iter().map(move |(source, points, ordered)| {
                    (
                        (family, source),
                        SeriesGroup {
                            points: points.into(),
                            stale_for: 0,
                            in_label_order: ordered,
                        },
                    )
                })
            })
            .collect()
    }
}

/// Hands out label sets, reusing the previous cycle's where the values are equal: first the
/// one at the same position, else any with the same text.
pub(super) struct LabelReuse<'a> {
    pub(super) previous: &'a [Option<Arc<LabelSet>>],
    pub(super) by_text: Option<FastMap<&'a str, &'a Arc<LabelSet>>>,
}

impl<'a> LabelReuse<'a> {
    pub(super) fn new(previous: &'a [Option<Arc<LabelSet>>]) -> Self {
        Self {
            previous,
            by_text: None,
        }
    }

    pub(super) fn get(
        &mut self,
        position: usize,
        names: &[&str],
        values: &[&str],
    ) -> Arc<LabelSet> {
        if let Some(Some(set)) = self.previous.get(position) {
            if set.matches(values) {
                return Arc::clone(set);
            }
        }
        let fresh = LabelSet::new(names, values);
        let previous = self.previous;
        let by_text = self.by_text.get_or_insert_with(|| {
            previous
                .iter()
                .flatten()
                .map(|set| (set.text(), set))
                .collect()
        });
        match by_text.get(fresh.text()) {
            Some(old) => Arc::clone(old),
            None => Arc::new(fresh),
        }
    }
}
