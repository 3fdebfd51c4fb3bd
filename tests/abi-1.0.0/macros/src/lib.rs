//! The `#[pfn_abi::function]` attribute. Use it through `pfn-abi`, which re-exports it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::{
    FnArg, GenericParam, Item, ItemFn, ItemImpl, Lifetime, ReturnType, Type, parse_macro_input, spanned::Spanned,
    visit_mut::VisitMut,
};

const SHAPES: &str = "a pfn function has one of these shapes:
    fn()                    fn(&Context)        fn(&mut Context)
    fn(input)               fn(&Context, input) fn(&mut Context, input)
returning (), Result<(), E>, O, Option<O> (None filters the message out), Result<O, E> or
Result<Option<O>, E>; input and O are Vec<u8>, &[u8], String, &str or Json<T>; E: Display.
A type with state implements pfn_abi::StatefulFunction: put the attribute on that impl block.";

/// Exports a function, or an `impl StatefulFunction for T` block, as the plugin's module.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = TokenStream2::from(attr);
        return syn::Error::new(attr.span(), "#[pfn_abi::function] takes no arguments").to_compile_error().into();
    }
    let expanded = match parse_macro_input!(item as Item) {
        Item::Fn(function) => export_fn(function),
        Item::Impl(block) => export_impl(block),
        other => Err(syn::Error::new_spanned(
            other,
            format!("#[pfn_abi::function] goes on a fn or an `impl StatefulFunction for T` block;\n{SHAPES}"),
        )),
    };
    expanded.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// How a parameter is passed: the context (shared or mutable) or the input.
#[derive(Clone, Copy)]
enum Param<'a> {
    Context { mutable: bool },
    Input(&'a Type),
}

fn is_context_path(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|segment| segment.ident == "Context"))
}

fn classify(arg: &FnArg) -> syn::Result<Param<'_>> {
    let FnArg::Typed(typed) = arg else {
        return Err(syn::Error::new_spanned(arg, format!("methods cannot be exported;\n{SHAPES}")));
    };
    if let Type::Reference(reference) = typed.ty.as_ref()
        && is_context_path(&reference.elem)
    {
        return Ok(Param::Context { mutable: reference.mutability.is_some() });
    }
    if is_context_path(&typed.ty) {
        return Err(syn::Error::new_spanned(
            &typed.ty,
            format!("take the context by reference: `&Context` or `&mut Context`;\n{SHAPES}"),
        ));
    }
    Ok(Param::Input(&typed.ty))
}

/// Replaces every lifetime in a type with `'_`, so the type can be named inside a body.
struct EraseLifetimes;

impl VisitMut for EraseLifetimes {
    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        *lifetime = Lifetime::new("'_", lifetime.span());
    }
}

fn export_fn(function: ItemFn) -> syn::Result<TokenStream2> {
    let signature = &function.sig;
    if let Some(asyncness) = signature.asyncness {
        return Err(syn::Error::new_spanned(asyncness, format!("async functions are not supported;\n{SHAPES}")));
    }
    if let Some(param) = signature.generics.params.iter().find(|p| !matches!(p, GenericParam::Lifetime(_))) {
        return Err(syn::Error::new_spanned(param, format!("generic functions cannot be exported;\n{SHAPES}")));
    }
    if let Some(variadic) = &signature.variadic {
        return Err(syn::Error::new_spanned(variadic, SHAPES));
    }
    let params = signature.inputs.iter().map(classify).collect::<syn::Result<Vec<_>>>()?;
    let (context, input) = match params.as_slice() {
        [] => (None, None),
        [Param::Context { mutable }] => (Some(*mutable), None),
        [Param::Input(ty)] => (None, Some(*ty)),
        [Param::Context { mutable }, Param::Input(ty)] => (Some(*mutable), Some(*ty)),
        [_, _] => {
            let why = "with two parameters, the first is `&Context` or `&mut Context` and the second the input";
            return Err(syn::Error::new_spanned(&signature.inputs, format!("{why};\n{SHAPES}")));
        }
        _ => {
            let why = "a pfn function takes at most two parameters";
            return Err(syn::Error::new_spanned(&signature.inputs, format!("{why};\n{SHAPES}")));
        }
    };

    let mut args = Vec::new();
    match context {
        Some(true) => args.push(quote!(ctx)),
        Some(false) => args.push(quote!(&*ctx)),
        None => {}
    }
    let decode = input.map(|ty| {
        let mut ty = ty.clone();
        EraseLifetimes.visit_type_mut(&mut ty);
        args.push(quote!(input));
        quote_spanned!(ty.span()=> let input: #ty = ::pfn_abi::FromPayload::from_payload(payload)?;)
    });
    let ident = &signature.ident;
    let returned_span = match &signature.output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let outcome = quote_spanned!(returned_span=> ::pfn_abi::IntoOutcome::into_outcome(returned, out));

    Ok(quote! {
        #function

        const _: () = {
            #[doc(hidden)]
            pub struct PfnExportedFunction;

            impl ::pfn_abi::Function for PfnExportedFunction {
                fn init(_: &::pfn_abi::Context<'_>) -> ::core::result::Result<Self, ::pfn_abi::Error> {
                    ::core::result::Result::Ok(Self)
                }

                #[allow(unused_variables)]
                fn process(
                    &mut self,
                    ctx: &mut ::pfn_abi::Context<'_>,
                    payload: &[u8],
                    out: &mut ::pfn_abi::Output<'_>,
                ) -> ::core::result::Result<::pfn_abi::Produced, ::pfn_abi::Error> {
                    #decode
                    let returned = #ident(#(#args),*);
                    #outcome
                }
            }

            ::pfn_abi::export_function!(PfnExportedFunction);
        };
    })
}

fn export_impl(block: ItemImpl) -> syn::Result<TokenStream2> {
    let implements_stateful = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "StatefulFunction");
    if !implements_stateful {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            format!("on an impl block, #[pfn_abi::function] takes `impl StatefulFunction for T`;\n{SHAPES}"),
        ));
    }
    let self_ty = &block.self_ty;
    Ok(quote! {
        #block
        ::pfn_abi::export_function!(::pfn_abi::Stateful<#self_ty>);
    })
}
