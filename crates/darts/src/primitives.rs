//! The DARTS candidate operations. Their order is the column order of the alpha matrices.

/// Names of the primitives, in alpha column order.
pub const PRIMITIVES: [&str; 8] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
];

/// Index of the `none` primitive (excluded when deriving genotypes).
pub const NONE: usize = 0;

/// Number of intermediate nodes per cell and the resulting number of edges (2 + 3 + 4 + 5).
pub const STEPS: usize = 4;
/// Edges per cell.
pub const EDGES: usize = 14;

/// Column index of a primitive name, if it is one.
pub fn index_of(name: &str) -> Option<usize> {
    PRIMITIVES.iter().position(|p| *p == name)
}

/// The (node, input) pair of each edge in order: node 0 from inputs 0, 1; node 1 from 0, 1, 2; ...
pub fn edge_endpoints() -> Vec<(usize, usize)> {
    (0..STEPS)
        .flat_map(|node| (0..node + 2).map(move |input| (node, input)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_edges_in_reference_order() {
        let e = edge_endpoints();
        assert_eq!(e.len(), EDGES);
        assert_eq!(&e[..5], &[(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]);
        assert_eq!(e[13], (3, 4));
        assert_eq!(index_of("sep_conv_3x3"), Some(4));
    }
}
