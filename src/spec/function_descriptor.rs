//! [`FunctionDescriptor`]: which function a task runs, and its text renderings.
//!
//! The renderings follow Ray's `src/ray/common/function_descriptor.h` in the
//! version the reference note quotes (the one whose base class has
//! `CallSiteString() { return CallString(); }` and
//! `DefaultTaskName() { return CallString() + "()"; }`; the per-language
//! overrides come from the stored copy of that header whose base class
//! matches the note word for word, antgroup/ant-ray's
//! `src/ray/common/function_descriptor.h`):
//!
//! | language | `ToString` | `CallString` | `CallSiteString` | `DefaultTaskName` |
//! | --- | --- | --- | --- | --- |
//! | Python | `{type=PythonFunctionDescriptor, module_name=M, class_name=C, function_name=F, function_hash=H}` | `last(C).last(F)`, or `last(F)` if `C` is empty (`last` = text after the last `.`) | `M.` + CallString | CallString + `()` |
//! | Java | `{type=JavaFunctionDescriptor, class_name=C, function_name=F, signature=S}` | `C.F`, or `F` if `C` is empty | CallString + `.` + `S` | CallString + `()` |
//! | Cpp | `{type=CppFunctionDescriptor, function_name=F}` plus `, class_name=C` before `}` when `C` is non-empty | `F` | CallString | CallString (no `()`) |
//! | Empty | `{type=EmptyFunctionDescriptor}` | empty | empty | `()` |
//! | Rust (shmwire) | `{type=RustFunctionDescriptor, module_path=M, type_name=T, function_name=F}` | `T::F`, or `F` if `T` is empty | `M::` + CallString, or CallString if `M` is empty | CallString + `()` |
//!
//! The same renderings are available on the archived form
//! ([`ArchivedFunctionDescriptor`]) so a receiver can name a task without
//! deserializing it.

use std::fmt;

use super::Language;

/// Function descriptor for Java (Ray's `JavaFunctionDescriptor`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct JavaFunctionDescriptor {
    /// Fully qualified class name, e.g. `io.ray.demo.Counter`.
    pub class_name: String,
    /// Method name.
    pub function_name: String,
    /// JVM type signature, e.g. `(I)I`.
    pub signature: String,
}

/// Function descriptor for Python (Ray's `PythonFunctionDescriptor`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct PythonFunctionDescriptor {
    /// Module, e.g. `__main__`.
    pub module_name: String,
    /// Class (actor) name, empty for a plain function.
    pub class_name: String,
    /// Function or method name (may be a dotted qualified name).
    pub function_name: String,
    /// Hash of the function's source; empty for actor methods.
    pub function_hash: String,
}

/// Function descriptor for C++ (Ray's `CppFunctionDescriptor`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct CppFunctionDescriptor {
    /// Remote function name.
    pub function_name: String,
    /// The caller (Ray keeps it but does not render it).
    pub caller: String,
    /// Actor class name, empty for a plain function.
    pub class_name: String,
}

/// Function descriptor for a native Rust handler (shmwire's addition).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct RustFunctionDescriptor {
    /// Module path, e.g. `my_app::kernels` (may be empty).
    pub module_path: String,
    /// Type (actor) name, empty for a free function.
    pub type_name: String,
    /// Function or method name.
    pub function_name: String,
}

/// Which function a task executes (Ray's `FunctionDescriptor` oneof).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub enum FunctionDescriptor {
    /// No function set (Ray's `EmptyFunctionDescriptor`).
    #[default]
    Empty,
    /// A Java method.
    Java(JavaFunctionDescriptor),
    /// A Python function or actor method.
    Python(PythonFunctionDescriptor),
    /// A C++ function or actor method.
    Cpp(CppFunctionDescriptor),
    /// A native Rust handler.
    Rust(RustFunctionDescriptor),
}

/// Borrowed view of either form, from which all renderings are produced.
#[derive(Clone, Copy)]
enum View<'a> {
    Empty,
    Java {
        class_name: &'a str,
        function_name: &'a str,
        signature: &'a str,
    },
    Python {
        module_name: &'a str,
        class_name: &'a str,
        function_name: &'a str,
        function_hash: &'a str,
    },
    Cpp {
        function_name: &'a str,
        class_name: &'a str,
    },
    Rust {
        module_path: &'a str,
        type_name: &'a str,
        function_name: &'a str,
    },
}

/// `s.substr(s.find_last_of(".") + 1)`: the text after the last `.`, or all of it.
fn after_last_dot(s: &str) -> &str {
    match s.rfind('.') {
        Some(i) => &s[i + 1..],
        None => s,
    }
}

impl View<'_> {
    fn write_to_string(self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            View::Empty => f.write_str("{type=EmptyFunctionDescriptor}"),
            View::Java {
                class_name,
                function_name,
                signature,
            } => write!(
                f,
                "{{type=JavaFunctionDescriptor, class_name={class_name}, \
                 function_name={function_name}, signature={signature}}}"
            ),
            View::Python {
                module_name,
                class_name,
                function_name,
                function_hash,
            } => write!(
                f,
                "{{type=PythonFunctionDescriptor, module_name={module_name}, \
                 class_name={class_name}, function_name={function_name}, \
                 function_hash={function_hash}}}"
            ),
            View::Cpp {
                function_name,
                class_name,
            } => {
                write!(
                    f,
                    "{{type=CppFunctionDescriptor, function_name={function_name}"
                )?;
                if !class_name.is_empty() {
                    write!(f, ", class_name={class_name}")?;
                }
                f.write_str("}")
            }
            View::Rust {
                module_path,
                type_name,
                function_name,
            } => write!(
                f,
                "{{type=RustFunctionDescriptor, module_path={module_path}, \
                 type_name={type_name}, function_name={function_name}}}"
            ),
        }
    }

    fn write_call_string(self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            View::Empty => Ok(()),
            View::Java {
                class_name,
                function_name,
                ..
            } => {
                if class_name.is_empty() {
                    f.write_str(function_name)
                } else {
                    write!(f, "{class_name}.{function_name}")
                }
            }
            View::Python {
                class_name,
                function_name,
                ..
            } => {
                if class_name.is_empty() {
                    f.write_str(after_last_dot(function_name))
                } else {
                    write!(
                        f,
                        "{}.{}",
                        after_last_dot(class_name),
                        after_last_dot(function_name)
                    )
                }
            }
            View::Cpp { function_name, .. } => f.write_str(function_name),
            View::Rust {
                type_name,
                function_name,
                ..
            } => {
                if type_name.is_empty() {
                    f.write_str(function_name)
                } else {
                    write!(f, "{type_name}::{function_name}")
                }
            }
        }
    }

    fn write_call_site_string(self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            View::Python { module_name, .. } => {
                write!(f, "{module_name}.")?;
                self.write_call_string(f)
            }
            View::Java { signature, .. } => {
                self.write_call_string(f)?;
                write!(f, ".{signature}")
            }
            View::Rust { module_path, .. } if !module_path.is_empty() => {
                write!(f, "{module_path}::")?;
                self.write_call_string(f)
            }
            _ => self.write_call_string(f),
        }
    }

    fn write_default_task_name(self, f: &mut impl fmt::Write) -> fmt::Result {
        self.write_call_string(f)?;
        match self {
            // Ray's CppFunctionDescriptor overrides DefaultTaskName with CallString().
            View::Cpp { .. } => Ok(()),
            _ => f.write_str("()"),
        }
    }

    fn language(self) -> Option<Language> {
        match self {
            View::Empty => None,
            View::Java { .. } => Some(Language::Java),
            View::Python { .. } => Some(Language::Python),
            View::Cpp { .. } => Some(Language::Cpp),
            View::Rust { .. } => Some(Language::Rust),
        }
    }

    fn render(self, w: impl Fn(Self, &mut String) -> fmt::Result) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = w(self, &mut s);
        s
    }
}

/// The renderings shared by [`FunctionDescriptor`] and its archived form.
macro_rules! renderings {
    () => {
        /// Ray's `CallString()`: the function or method call without the
        /// module, e.g. `RolloutWorker.compute_gradient`.
        pub fn call_string(&self) -> String {
            self.view().render(View::write_call_string)
        }

        /// Ray's `CallSiteString()`: a one-word summary of the call site,
        /// e.g. `plot_pong_example.RolloutWorker.compute_gradient`.
        pub fn call_site_string(&self) -> String {
            self.view().render(View::write_call_site_string)
        }

        /// Ray's `DefaultTaskName()`: the task name used when none is given,
        /// e.g. `RolloutWorker.compute_gradient()`.
        pub fn default_task_name(&self) -> String {
            self.view().render(View::write_default_task_name)
        }

        /// The language of the function, `None` for [`FunctionDescriptor::Empty`].
        pub fn language(&self) -> Option<Language> {
            self.view().language()
        }
    };
}

impl FunctionDescriptor {
    /// A Python function (`class_name` empty) or actor method.
    pub fn python(
        module_name: impl Into<String>,
        class_name: impl Into<String>,
        function_name: impl Into<String>,
        function_hash: impl Into<String>,
    ) -> Self {
        Self::Python(PythonFunctionDescriptor {
            module_name: module_name.into(),
            class_name: class_name.into(),
            function_name: function_name.into(),
            function_hash: function_hash.into(),
        })
    }

    /// A Java method.
    pub fn java(
        class_name: impl Into<String>,
        function_name: impl Into<String>,
        signature: impl Into<String>,
    ) -> Self {
        Self::Java(JavaFunctionDescriptor {
            class_name: class_name.into(),
            function_name: function_name.into(),
            signature: signature.into(),
        })
    }

    /// A C++ function (no caller, no class), Ray's `BuildCpp(function_name)`.
    pub fn cpp(function_name: impl Into<String>) -> Self {
        Self::cpp_with(function_name, "", "")
    }

    /// A C++ function or actor method with Ray's optional `caller` and `class_name`.
    pub fn cpp_with(
        function_name: impl Into<String>,
        caller: impl Into<String>,
        class_name: impl Into<String>,
    ) -> Self {
        Self::Cpp(CppFunctionDescriptor {
            function_name: function_name.into(),
            caller: caller.into(),
            class_name: class_name.into(),
        })
    }

    /// A native Rust handler: `module_path` (may be empty), `type_name`
    /// (empty for a free function) and `function_name`.
    pub fn rust(
        module_path: impl Into<String>,
        type_name: impl Into<String>,
        function_name: impl Into<String>,
    ) -> Self {
        Self::Rust(RustFunctionDescriptor {
            module_path: module_path.into(),
            type_name: type_name.into(),
            function_name: function_name.into(),
        })
    }

    fn view(&self) -> View<'_> {
        match self {
            Self::Empty => View::Empty,
            Self::Java(d) => View::Java {
                class_name: &d.class_name,
                function_name: &d.function_name,
                signature: &d.signature,
            },
            Self::Python(d) => View::Python {
                module_name: &d.module_name,
                class_name: &d.class_name,
                function_name: &d.function_name,
                function_hash: &d.function_hash,
            },
            Self::Cpp(d) => View::Cpp {
                function_name: &d.function_name,
                class_name: &d.class_name,
            },
            Self::Rust(d) => View::Rust {
                module_path: &d.module_path,
                type_name: &d.type_name,
                function_name: &d.function_name,
            },
        }
    }

    renderings!();
}

impl ArchivedFunctionDescriptor {
    fn view(&self) -> View<'_> {
        match self {
            Self::Empty => View::Empty,
            Self::Java(d) => View::Java {
                class_name: d.class_name.as_str(),
                function_name: d.function_name.as_str(),
                signature: d.signature.as_str(),
            },
            Self::Python(d) => View::Python {
                module_name: d.module_name.as_str(),
                class_name: d.class_name.as_str(),
                function_name: d.function_name.as_str(),
                function_hash: d.function_hash.as_str(),
            },
            Self::Cpp(d) => View::Cpp {
                function_name: d.function_name.as_str(),
                class_name: d.class_name.as_str(),
            },
            Self::Rust(d) => View::Rust {
                module_path: d.module_path.as_str(),
                type_name: d.type_name.as_str(),
                function_name: d.function_name.as_str(),
            },
        }
    }

    renderings!();
}

impl fmt::Display for FunctionDescriptor {
    /// Ray's `ToString()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().write_to_string(f)
    }
}

impl fmt::Display for ArchivedFunctionDescriptor {
    /// Ray's `ToString()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().write_to_string(f)
    }
}
