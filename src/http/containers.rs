//! Workload routes: `POST /v1/containers` and `GET /v1/container`, from the snapshot only.
//! Replies are built by [`crate::reply::containers`].

use std::any::Any;
use std::sync::Arc;

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::encoding::{encode_json, EncodedBody};
use crate::http::extract::{ProtoBody, ProtoQuery};
use crate::http::list_pieces::{ListPieces, PiecedList};
use crate::http::reply_cache::Freshness;
use crate::reply::containers::{
    container_detail, container_rows, ContainerListing, ContainerRequest, ContainersRequest,
};

/// `POST /v1/containers`: `pageSize` and `resourceGroup` are accepted and ignored (the
/// frontend pages locally). One build per snapshot and distinct request.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<ContainersRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(list_reply(&ctx, request)).await
}

/// [`list`]'s reply, also built by [`crate::http::warm`] before the first request.
pub async fn list_reply(
    ctx: &RestContext,
    request: ContainersRequest,
) -> Result<HttpResponse, ApiError> {
    {
        let snapshot = ctx.snapshot().await?;
        let (source, filters, zone) = (
            snapshot.clone(),
            request.filters.clone(),
            ctx.zone().clone(),
        );
        let pieces = ctx.state().replies.list_pieces();
        ctx.cached_encoded(
            "/v1/containers",
            &request,
            &snapshot,
            Freshness::Snapshot,
            |_| async {},
            move |(), key| {
                let listing = ContainerListing {
                    snapshot: source,
                    filters,
                    zone,
                };
                encode_listing(&listing, &pieces, key)
            },
        )
        .await
    }
}

/// Lists shorter than this are built whole: pieces pay off where a build is long.
const MIN_PIECED_ROWS: usize = 256;

/// The container list as kept: a long one in pieces ([`crate::http::list_pieces`]), so that
/// after a change only the stretches of rows that changed are serialized and compressed.
fn encode_listing(
    listing: &ContainerListing,
    pieces: &ListPieces,
    key: &str,
) -> Result<EncodedBody, ApiError> {
    let rows = container_rows(&listing.snapshot, &listing.filters, &listing.zone);
    if rows.len() < MIN_PIECED_ROWS {
        return encode_json(&rows).map_err(ApiError::Render);
    }
    let ids = rows.row_ids();
    let holds: Arc<dyn Any + Send + Sync> = Arc::clone(&listing.snapshot) as _;
    pieces
        .with_store(key, |store| {
            store.encode(PiecedList {
                // Every item also reads the inventory (node UIDs, devices).
                context: Arc::as_ptr(&listing.snapshot.inventory) as usize,
                holds,
                prefix: b"{\"items\":[",
                suffix: b"]}",
                rows: &ids,
                write_row: |row: usize, out: &mut Vec<u8>| match rows.item(row) {
                    Some(item) => serde_json::to_writer(out, &item)
                        .map(|()| true)
                        .map_err(std::io::Error::other),
                    None => Ok(false),
                },
            })
        })
        .map_err(|error| ApiError::Render(serde_json::Error::io(error)))
}

/// `GET /v1/container?name=&podUid=&deviceId=`: not found is `200` with an empty container.
pub async fn detail(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<ContainerRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(container_detail(&snapshot, &request, ctx.zone())))
    })
    .await
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;
    use crate::cluster::snapshot::{ClusterSnapshot, PodRecord};
    use crate::http::list_pieces::tests::gunzip;
    use crate::reply::containers::{container_list, ContainerFilters};

    #[test]
    fn the_list_in_pieces_is_the_list_and_a_changed_pod_recompresses_its_stretch() {
        let snapshot = Arc::new(crate::synthetic::ClusterShape::gpus(80).snapshot());
        let zone = TimeZone::UTC;
        let listing = |snapshot: &Arc<ClusterSnapshot>| ContainerListing {
            snapshot: Arc::clone(snapshot),
            filters: ContainerFilters::default(),
            zone: zone.clone(),
        };
        let whole = container_list(&snapshot, &ContainerFilters::default(), &zone);
        assert!(
            whole.items.len() >= MIN_PIECED_ROWS,
            "{}",
            whole.items.len()
        );
        let whole = serde_json::to_string(&whole).unwrap();
        let pieces = ListPieces::default();
        let body = encode_listing(&listing(&snapshot), &pieces, "all").unwrap();
        assert_eq!(gunzip(&body), whole);
        let first = pieces.with_store("all", |store| store.last_build());
        assert!(first.stretches > 2, "{first:?}");

        // One pod replaced by an equal record, as a watch event replaces it: the same text,
        // built from the kept stretches but the one (or two, if it ended one) it falls in.
        let mut pods: Vec<_> = snapshot.pods.iter().cloned().collect();
        let middle = pods.len() / 2;
        pods[middle] = Arc::new(PodRecord::clone(&pods[middle]));
        let next = Arc::new(ClusterSnapshot::build(
            snapshot.generation + 1,
            Arc::clone(&snapshot.inventory),
            pods,
            snapshot.scheduling.to_vec(),
        ));
        let body = encode_listing(&listing(&next), &pieces, "all").unwrap();
        assert_eq!(gunzip(&body), whole);
        let changed = pieces.with_store("all", |store| store.last_build());
        assert!(
            (1..=2).contains(&changed.compressed) && changed.stretches == first.stretches,
            "{changed:?} after {first:?}"
        );

        // Another filter is another list, built whole in its own store.
        let filtered = ContainerListing {
            filters: ContainerFilters {
                node_name: "nowhere".into(),
                ..ContainerFilters::default()
            },
            ..listing(&next)
        };
        let EncodedBody::Plain(text) = encode_listing(&filtered, &pieces, "none").unwrap() else {
            panic!("an empty list is kept plain");
        };
        assert_eq!(&text[..], br#"{"items":[]}"#);
    }
}
