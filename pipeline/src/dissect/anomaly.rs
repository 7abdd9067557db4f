//! Typed anomalies: each protocol lists what it counts in its own `Anomaly` enum (made with
//! [`anomalies!`](crate::anomalies)), so the names are fixed in one place per protocol and a
//! typo cannot create a new series. Every name is `protocol.name`, exported as
//! `tapwire_dissect_anomalies_total{protocol,name}` and printed by `tapwire dissect`; an
//! anomaly that concerns one exchange is also listed in its `anomalies` field.

/// Something odd in the bytes: counted, never a crash.
pub trait AnomalyName: Copy {
    /// The stable `protocol.name`.
    fn name(self) -> &'static str;
}

/// An enum of anomalies with their stable names:
/// `anomalies! { pub enum Anomaly { Gap = "redis.gap", ... } }`.
#[macro_export]
macro_rules! anomalies {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl $name {
            /// Every anomaly of this enum.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable `protocol.name`.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl $crate::dissect::anomaly::AnomalyName for $name {
            fn name(self) -> &'static str {
                $name::name(self)
            }
        }
    };
}

anomalies! {
    /// What the framework and the flow layer count, whatever the protocol.
    pub enum Common {
        /// A dissector left more than `MAX_PENDING` bytes unconsumed.
        PendingOverflow = "dissect.pending_overflow",
        /// A UDP datagram cut by the snaplen.
        TruncatedDatagram = "udp.truncated_datagram",
        /// A request in flight was dropped to make room (pairing cap).
        PairingEvicted = "pairing.evicted",
    }
}
