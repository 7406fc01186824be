//! `berth graph`: a picture of the host as berth sees it. `read` builds
//! the [`Graph`] from the state (read-only, no lock) and the host's links,
//! addresses and default routes; `text`, `dot` and `svg` draw it as a
//! tree for terminals, as Graphviz input, and as an SVG berth lays out
//! itself.

mod build;
pub mod dot;
pub mod model;
pub mod svg;
pub mod text;

pub use build::Rows;
pub use model::{Graph, DEFAULT_LIMIT};

use crate::context::Context;
use crate::error::Result;

/// How the graph is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Dot,
    Svg,
}

/// The graph of this host; `limit` endpoints per network before the
/// rest are summarised (None: all of them).
pub fn read(ctx: &mut Context, limit: Option<usize>) -> Result<Graph> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Graph {
            no_state: Some(ctx.state_dir.display().to_string()),
            ..Graph::default()
        });
    };
    let tx = store.read()?;
    let networks = tx.networks()?;
    let with_status = tx.endpoints_with_status()?;
    let owners = tx.owners()?;
    let mut endpoints: Vec<_> = with_status.iter().map(|(e, _)| e.clone()).collect();
    tx.load_ports(&mut endpoints)?;
    drop(tx);
    let rows = Rows {
        networks,
        endpoints: endpoints
            .into_iter()
            .zip(with_status.into_iter().map(|(_, s)| s))
            .collect(),
        owners,
    };
    // The picture is still worth having without the kernel's side.
    let (facts, missing) = match ctx.kernel.netns_facts(None) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut graph = build::graph(&rows, facts.as_ref());
    graph.facts_missing = missing;
    graph.collapse(limit);
    Ok(graph)
}

/// The graph drawn in `format`.
pub fn render(graph: &Graph, format: Format) -> String {
    match format {
        Format::Text => text::render(graph),
        Format::Dot => dot::render(graph),
        Format::Svg => svg::render(graph),
    }
}

#[cfg(test)]
mod tests;
