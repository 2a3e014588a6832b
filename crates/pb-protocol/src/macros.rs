//! The one macro that turns a table of `Variant(Body) = "message.name"` rows into a typed
//! message enum with its name table, decoder and encoder, so that no destination kind
//! repeats that code.

/// Declares a message enum. Each row is `Variant = "name"` (empty body) or
/// `Variant(BodyType) = "name"`. Generates `NAMES`, `name()`, `from_parts()` and `to_body()`.
macro_rules! messages {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $( $(#[$vmeta:meta])* $var:ident $(($body:ty))? = $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $( $(#[$vmeta])* #[doc = concat!("`", $name, "`")] $var $(($body))?, )*
        }

        impl $enum {
            /// Every message name of this enum, in declaration order.
            pub(crate) const NAMES: &'static [&'static str] = &[$($name),*];

            /// The message name on the wire.
            pub fn name(&self) -> &'static str {
                match self { $( Self::$var { .. } => $name, )* }
            }

            /// Decode a message from its name and body: `Ok(None)` when the name is not one
            /// of this enum's, `Err` with serde's precise reason when the body does not fit.
            pub fn from_parts(name: &str, body: $crate::Body) -> Result<Option<Self>, String> {
                $(
                    if name == $name {
                        return Ok(Some(messages!(@decode $var, body $(, $body)?)));
                    }
                )*
                drop(body);
                Ok(None)
            }

            /// The message's body as a JSON object (`{}` for messages without properties).
            pub fn to_body(&self) -> $crate::Body {
                match self {
                    $( messages!(@pattern $var, b $(, $body)?) => messages!(@encode b $(, $body)?), )*
                }
            }
        }
    };
    (@decode $var:ident, $body:ident) => { Self::$var };
    (@decode $var:ident, $body:ident, $ty:ty) => { Self::$var($crate::from_body::<$ty>($body)?) };
    (@pattern $var:ident, $b:ident) => { Self::$var };
    (@pattern $var:ident, $b:ident, $ty:ty) => { Self::$var($b) };
    (@encode $b:ident) => { $crate::Body::new() };
    (@encode $b:ident, $ty:ty) => { $crate::to_body($b) };
}

/// Declares the enum over the six destination kinds that wraps one message enum per kind.
macro_rules! by_kind {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident { $( $kind:ident($inner:ty), )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum { $( $kind($inner), )* }

        impl $enum {
            /// The destination kind the message belongs to.
            pub fn kind(&self) -> $crate::Kind {
                match self { $( Self::$kind(_) => $crate::Kind::$kind, )* }
            }

            /// The message name on the wire.
            pub fn name(&self) -> &'static str {
                match self { $( Self::$kind(m) => m.name(), )* }
            }

            /// The message's body as a JSON object.
            pub fn to_body(&self) -> $crate::Body {
                match self { $( Self::$kind(m) => m.to_body(), )* }
            }

            /// Every message name a destination of `kind` has.
            pub fn names(kind: $crate::Kind) -> &'static [&'static str] {
                match kind { $( $crate::Kind::$kind => <$inner>::NAMES, )* }
            }

            /// Decode a message of `kind` from its name and body (see the per-kind enums).
            pub fn from_parts(
                kind: $crate::Kind,
                name: &str,
                body: $crate::Body,
            ) -> Result<Option<Self>, String> {
                match kind {
                    $( $crate::Kind::$kind => Ok(<$inner>::from_parts(name, body)?.map(Self::$kind)), )*
                }
            }
        }

        $(
            impl From<$inner> for $enum {
                fn from(m: $inner) -> Self {
                    Self::$kind(m)
                }
            }
        )*
    };
}
