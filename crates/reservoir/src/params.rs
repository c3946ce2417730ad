//! Statement parameters: positional (tuples, arrays, `Vec`) in the database's
//! own placeholder style, or named (`params!`, any serde struct or map)
//! written `:name` on every dialect.

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::sql::{Placeholder, rewrite_named};
use crate::value::{ToValue, Value, from_json};

/// The parameters of one statement.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// Bound in order to the database's native placeholders.
    Positional(Vec<Value>),
    /// Bound by name to `:name` placeholders.
    Named(Vec<(String, Value)>),
}

impl Params {
    /// Named parameters from any serde struct or map (`{"id": 1}` binds `:id`).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Emp { id: i64, department_id: i64 }
    /// let p = reservoir::Params::from_serde(&Emp { id: 1, department_id: 2 })?;
    /// assert!(matches!(p, reservoir::Params::Named(ref v) if v.len() == 2));
    /// # Ok::<(), reservoir::Error>(())
    /// ```
    pub fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Params> {
        let json = serde_json::to_value(value)
            .map_err(|e| Error::new(ErrorKind::Param, format!("cannot serialize parameters: {e}")))?;
        match json {
            serde_json::Value::Object(map) => Ok(Params::Named(
                map.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
            )),
            other => Err(Error::new(
                ErrorKind::Param,
                format!("named parameters must serialize to a struct or map, not {other}"),
            )),
        }
    }

    /// Produces the SQL to send and the values in bind order. Named
    /// parameters are checked: a missing or unused name is an error naming it.
    pub(crate) fn bind(
        self,
        sql: &str,
        style: Placeholder,
    ) -> Result<(std::borrow::Cow<'_, str>, Vec<Value>)> {
        match self {
            Params::None => Ok((sql.into(), Vec::new())),
            Params::Positional(values) => Ok((sql.into(), values)),
            Params::Named(named) => {
                let rewritten = rewrite_named(sql, style)?;
                let mut used = vec![false; named.len()];
                let mut values = Vec::with_capacity(rewritten.names.len());
                for name in &rewritten.names {
                    let pos = named.iter().position(|(n, _)| n == name).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Param,
                            format!("missing value for named parameter :{name}"),
                        )
                    })?;
                    used[pos] = true;
                    values.push(named[pos].1.clone());
                }
                if let Some(pos) = used.iter().position(|u| !u) {
                    return Err(Error::new(
                        ErrorKind::Param,
                        format!("parameter :{} is not used by the statement", named[pos].0),
                    ));
                }
                Ok((rewritten.sql.into(), values))
            }
        }
    }
}

/// Anything that can be a statement's parameters.
pub trait IntoParams {
    /// Converts into [`Params`].
    fn into_params(self) -> Params;
}

impl IntoParams for Params {
    fn into_params(self) -> Params {
        self
    }
}

impl IntoParams for () {
    fn into_params(self) -> Params {
        Params::None
    }
}

impl<T: ToValue> IntoParams for Vec<T> {
    fn into_params(self) -> Params {
        Params::Positional(self.iter().map(ToValue::to_value).collect())
    }
}

impl<T: ToValue> IntoParams for &[T] {
    fn into_params(self) -> Params {
        Params::Positional(self.iter().map(ToValue::to_value).collect())
    }
}

impl<T: ToValue, const N: usize> IntoParams for [T; N] {
    fn into_params(self) -> Params {
        Params::Positional(self.iter().map(ToValue::to_value).collect())
    }
}

macro_rules! tuple_params {
    ($($name:ident),+) => {
        impl<$($name: ToValue),+> IntoParams for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_params(self) -> Params {
                let ($($name,)+) = self;
                Params::Positional(vec![$($name.to_value()),+])
            }
        }
    };
}
tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);
tuple_params!(A, B, C, D, E, F);
tuple_params!(A, B, C, D, E, F, G);
tuple_params!(A, B, C, D, E, F, G, H);
tuple_params!(A, B, C, D, E, F, G, H, I);
tuple_params!(A, B, C, D, E, F, G, H, I, J);
tuple_params!(A, B, C, D, E, F, G, H, I, J, K);
tuple_params!(A, B, C, D, E, F, G, H, I, J, K, L);

/// Named parameters: `params!{"id" => 1, "name" => "ann"}` binds `:id` and `:name`.
///
/// ```
/// let p = reservoir::params! {"id" => 1, "name" => "ann"};
/// assert!(matches!(p, reservoir::Params::Named(ref v) if v.len() == 2));
/// ```
#[macro_export]
macro_rules! params {
    () => { $crate::Params::Named(::std::vec::Vec::new()) };
    ($($name:expr => $value:expr),+ $(,)?) => {
        $crate::Params::Named(::std::vec![$((
            ::std::string::String::from($name),
            $crate::value::ToValue::to_value(&$value),
        )),+])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_binding_checks_names() {
        let (sql, values) = params! {"a" => 1, "b" => "x"}
            .bind("SELECT :b, :a, :b", Placeholder::Question)
            .unwrap();
        assert_eq!(sql, "SELECT ?, ?, ?");
        assert_eq!(
            values,
            vec![Value::Text("x".into()), Value::I32(1), Value::Text("x".into())]
        );

        let err = params! {"a" => 1}
            .bind("SELECT :a, :missing", Placeholder::Question)
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Param);
        assert!(err.to_string().contains(":missing"), "{err}");

        let err = params! {"a" => 1, "extra" => 2}
            .bind("SELECT :a", Placeholder::Dollar)
            .unwrap_err();
        assert!(err.to_string().contains(":extra"), "{err}");
    }

    #[test]
    fn serde_structs_are_named_params() {
        #[derive(Serialize)]
        struct P {
            id: i64,
            name: Option<String>,
        }
        let (sql, values) = Params::from_serde(&P { id: 3, name: None })
            .unwrap()
            .bind("UPDATE t SET name = :name WHERE id = :id", Placeholder::Dollar)
            .unwrap();
        assert_eq!(sql, "UPDATE t SET name = $1 WHERE id = $2");
        assert_eq!(values, vec![Value::Null, Value::I64(3)]);
        assert_eq!(Params::from_serde(&5).unwrap_err().kind(), &ErrorKind::Param);
    }
}
