//! The DARTS candidate operations. Their order is the column order of the alpha matrices.

/// A DARTS candidate operation (SPEC section 1). The declaration order is the alpha column order;
/// names are parsed once, where text comes in (genotype files, JSON), and written by [`Primitive::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Primitive {
    /// Zeros (the edge is absent).
    None,
    /// 3x3 max pool (with a BN in the search model).
    MaxPool3x3,
    /// 3x3 average pool, padding not counted (with a BN in the search model).
    AvgPool3x3,
    /// Identity, or FactorizedReduce on stride-2 edges.
    SkipConnect,
    /// Two ReLU, depthwise 3x3, 1x1 conv, BN blocks.
    SepConv3x3,
    /// Two ReLU, depthwise 5x5, 1x1 conv, BN blocks.
    SepConv5x5,
    /// ReLU, depthwise 3x3 at dilation 2, 1x1 conv, BN.
    DilConv3x3,
    /// ReLU, depthwise 5x5 at dilation 2, 1x1 conv, BN.
    DilConv5x5,
}

impl Primitive {
    /// All eight, in alpha column order.
    pub const ALL: [Primitive; 8] = [
        Primitive::None,
        Primitive::MaxPool3x3,
        Primitive::AvgPool3x3,
        Primitive::SkipConnect,
        Primitive::SepConv3x3,
        Primitive::SepConv5x5,
        Primitive::DilConv3x3,
        Primitive::DilConv5x5,
    ];

    /// The reference name (`sep_conv_3x3`).
    pub fn name(self) -> &'static str {
        match self {
            Primitive::None => "none",
            Primitive::MaxPool3x3 => "max_pool_3x3",
            Primitive::AvgPool3x3 => "avg_pool_3x3",
            Primitive::SkipConnect => "skip_connect",
            Primitive::SepConv3x3 => "sep_conv_3x3",
            Primitive::SepConv5x5 => "sep_conv_5x5",
            Primitive::DilConv3x3 => "dil_conv_3x3",
            Primitive::DilConv5x5 => "dil_conv_5x5",
        }
    }

    /// The primitive of a reference name.
    pub fn parse(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its column in an alpha matrix.
    pub fn column(self) -> usize {
        self as usize
    }

    /// For the convolutions: (filter side, separable); `None` for the parameter-free primitives.
    pub fn conv(self) -> Option<(usize, bool)> {
        match self {
            Primitive::SepConv3x3 => Some((3, true)),
            Primitive::SepConv5x5 => Some((5, true)),
            Primitive::DilConv3x3 => Some((3, false)),
            Primitive::DilConv5x5 => Some((5, false)),
            _ => None,
        }
    }

    /// `none`, the pools and `skip_connect`: the operations a collapsed cell is made of.
    pub fn is_parameter_free(self) -> bool {
        self.conv().is_none()
    }

    /// "none, max_pool_3x3, ...": for error messages.
    pub fn names() -> String {
        Primitive::ALL.map(Primitive::name).join(", ")
    }
}

impl std::fmt::Display for Primitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Primitive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Primitive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Primitive::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown primitive '{name}' (known: {})",
                Primitive::names()
            ))
        })
    }
}

/// Number of intermediate nodes per cell and the resulting number of edges (2 + 3 + 4 + 5).
pub const STEPS: usize = 4;
/// Edges per cell.
pub const EDGES: usize = 14;

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
        assert_eq!(
            Primitive::parse("sep_conv_3x3"),
            Some(Primitive::SepConv3x3)
        );
        assert_eq!(Primitive::SepConv3x3.column(), 4);
        for (k, p) in Primitive::ALL.into_iter().enumerate() {
            assert_eq!((p.column(), Primitive::parse(p.name())), (k, Some(p)));
        }
        assert_eq!(Primitive::parse("conv_7x1_1x7"), None);
        let json = serde_json::to_string(&[Primitive::DilConv5x5]).unwrap();
        assert_eq!(json, r#"["dil_conv_5x5"]"#);
        let e = serde_json::from_str::<Vec<Primitive>>(r#"["conv_7x1_1x7"]"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown primitive 'conv_7x1_1x7'"),
            "{e}"
        );
    }
}
