//! The derive input as the other phases see it: the item's `#[classify]`
//! options and, for each variant (or the struct), its options and fields.
//! Everything borrows from the `syn` input so errors keep the user's spans.

use crate::error::Errors;
use crate::runtime_path::RuntimePath;

use super::attr::{self, Attrs};

pub(crate) struct Input<'a> {
    pub(crate) original: &'a syn::DeriveInput,
    /// The container's options (for a struct, also its outcome).
    pub(crate) attrs: Attrs<'a>,
    pub(crate) data: Data<'a>,
}

pub(crate) enum Data<'a> {
    Enum(Vec<Variant<'a>>),
    Struct(Vec<Field<'a>>),
    Union(&'a syn::DataUnion),
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a syn::Ident,
    /// A unit variant is matched as `Self::V`, any other as `Self::V { .. }`.
    pub(crate) unit: bool,
    pub(crate) attrs: Attrs<'a>,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    /// `name` for named fields, `0`, `1`, ... for tuple fields.
    pub(crate) member: syn::Member,
    pub(crate) ty: &'a syn::Type,
}

impl<'a> Input<'a> {
    /// Reads every `#[classify]` attribute; bad ones are reported to
    /// `errors` and left out, so later phases still see the rest.
    pub(crate) fn from_syn(input: &'a syn::DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::get(&input.attrs, errors);
        let data = match &input.data {
            syn::Data::Enum(data) => Data::Enum(
                data.variants
                    .iter()
                    .map(|variant| Variant {
                        ident: &variant.ident,
                        unit: matches!(variant.fields, syn::Fields::Unit),
                        attrs: attr::get(&variant.attrs, errors),
                        fields: Field::multiple_from_syn(&variant.fields, errors),
                    })
                    .collect(),
            ),
            syn::Data::Struct(data) => Data::Struct(Field::multiple_from_syn(&data.fields, errors)),
            syn::Data::Union(data) => Data::Union(data),
        };
        Self { original: input, attrs, data }
    }

    /// The path generated code uses for the runtime crate.
    pub(crate) fn runtime_path(&self) -> RuntimePath {
        self.attrs.crate_path.as_ref().map_or_else(RuntimePath::default_path, |path| path.value.runtime.clone())
    }
}

impl<'a> Field<'a> {
    fn multiple_from_syn(fields: &'a syn::Fields, errors: &mut Errors) -> Vec<Self> {
        fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                // `#[classify]` is a helper attribute, so rustc accepts it on
                // fields too; say where it belongs instead of ignoring it.
                for attr in field.attrs.iter().filter(|attr| attr.path().is_ident(attr::CLASSIFY)) {
                    errors.spanned(
                        attr,
                        "`#[classify]` is not allowed on a field; name the field on its variant: \
                         `#[classify(backoff = field)]`",
                    );
                }
                let member = match &field.ident {
                    Some(ident) => syn::Member::Named(ident.clone()),
                    None => syn::Member::Unnamed(syn::Index {
                        index: u32::try_from(i).expect("fewer than 2^32 fields"),
                        span: proc_macro2::Span::call_site(),
                    }),
                };
                Field { member, ty: &field.ty }
            })
            .collect()
    }
}
