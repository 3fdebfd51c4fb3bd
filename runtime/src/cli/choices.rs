//! How the command line names the values of the enums that other layers define, so that those
//! layers need not know about the command line.

use clap::{ValueEnum, builder::PossibleValue};

use crate::{
    io::lines::{InputFormat, OutputFormat},
    vocabulary::SubscriptionType,
};

impl ValueEnum for SubscriptionType {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for InputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Raw, Self::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Raw => PossibleValue::new("raw").help("Each line is a payload"),
            Self::Json => {
                PossibleValue::new("json").help("Each line is a JSON envelope (value, key, properties, event_time)")
            }
        })
    }
}

impl ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Raw, Self::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Raw => PossibleValue::new("raw").help("Each result as it is, followed by a newline"),
            Self::Json => PossibleValue::new("json").help("Each result as {\"value\": ...} or {\"value_base64\": ...}"),
        })
    }
}
