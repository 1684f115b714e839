//! Where sync targets may deliver, all operator choices, never a tenant's: the root file
//! targets write below (`REGKEEPER_SYNC_FILE_ROOT`), the Kubernetes cluster
//! (`REGKEEPER_SYNC_KUBECONFIG`) and the namespaces its targets may name
//! (`REGKEEPER_SYNC_KUBERNETES_NAMESPACES`). Kept apart from `config.rs` so each
//! setting's parsing and validation sit beside its type.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// Where sync targets may deliver: operator choices, never a tenant's.
#[derive(Debug, Clone, Default)]
pub struct SyncConfig {
    /// File targets write below `ROOT/WORKSPACE/`; they are refused without a root.
    pub file_root: Option<PathBuf>,
    /// How to reach a Kubernetes cluster; Kubernetes targets are refused without it.
    pub kubernetes: Option<KubernetesAccess>,
    /// Namespaces Kubernetes targets may name; `*` allows any.
    pub kubernetes_namespaces: Vec<String>,
}

impl SyncConfig {
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.kubernetes_namespaces
            .iter()
            .any(|allowed| allowed == "*" || allowed == namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubernetesAccess {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
}

impl SyncConfig {
    /// Reads the destinations' settings (environment first, then the file's values),
    /// each validated with an error naming its key.
    pub(super) fn load(
        file_root: Option<PathBuf>,
        kubeconfig: Option<String>,
        kubernetes_namespaces: Vec<String>,
    ) -> Result<Self, ConfigError> {
        // Canonical, so a later change of working directory or a symlinked root cannot
        // move where files land.
        let file_root = file_root
            .map(|root| {
                std::fs::canonicalize(&root)
                    .ok()
                    .filter(|root| root.is_dir())
                    .ok_or_else(|| ConfigError::Invalid {
                        key: "REGKEEPER_SYNC_FILE_ROOT",
                        message: format!("{} is not an existing directory", root.display()),
                    })
            })
            .transpose()?;
        let kubernetes = match kubeconfig.as_deref() {
            None => None,
            Some("in-cluster") => Some(KubernetesAccess::InCluster),
            Some(path) if Path::new(path).is_file() => {
                Some(KubernetesAccess::Kubeconfig(PathBuf::from(path)))
            }
            Some(path) => {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_SYNC_KUBECONFIG",
                    message: format!("{path} is not a readable kubeconfig file (or `in-cluster`)"),
                })
            }
        };
        for namespace in &kubernetes_namespaces {
            if namespace != "*"
                && crate::domain::sync_target::validate_namespace(namespace).is_err()
            {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
                    message: format!("`{namespace}` is not a namespace name (or `*` for any)"),
                });
            }
        }
        if kubernetes.is_some() && kubernetes_namespaces.is_empty() {
            return Err(ConfigError::Invalid {
                key: "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
                message:
                    "required with REGKEEPER_SYNC_KUBECONFIG: the namespaces sync targets may \
                      write Secrets to, comma-separated, or `*` for any"
                        .into(),
            });
        }
        Ok(SyncConfig {
            file_root,
            kubernetes,
            kubernetes_namespaces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn sync_destinations_are_operator_settings() {
        let config = load(&[]).unwrap();
        assert!(config.sync.file_root.is_none() && config.sync.kubernetes.is_none());
        let directory = tempfile::tempdir().unwrap();
        let kubeconfig = directory.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
        let root = directory.path().display().to_string();
        let kubeconfig = kubeconfig.display().to_string();
        let config = load(&[
            ("REGKEEPER_SYNC_FILE_ROOT", &root),
            ("REGKEEPER_SYNC_KUBECONFIG", &kubeconfig),
            ("REGKEEPER_SYNC_KUBERNETES_NAMESPACES", "ci, build"),
        ])
        .unwrap();
        assert!(config.sync.file_root.as_ref().unwrap().is_absolute());
        assert!(
            config.sync.namespace_allowed("build") && !config.sync.namespace_allowed("kube-system")
        );
        for (variables, key) in [
            (
                vec![("REGKEEPER_SYNC_FILE_ROOT", "/nonexistent/regkeeper-sync")],
                "REGKEEPER_SYNC_FILE_ROOT",
            ),
            (
                vec![("REGKEEPER_SYNC_KUBECONFIG", kubeconfig.as_str())],
                "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
            ),
            (
                vec![
                    ("REGKEEPER_SYNC_KUBECONFIG", "in-cluster"),
                    ("REGKEEPER_SYNC_KUBERNETES_NAMESPACES", "Bad_Name"),
                ],
                "REGKEEPER_SYNC_KUBERNETES_NAMESPACES",
            ),
        ] {
            let error = load(&variables).unwrap_err();
            assert!(error.to_string().starts_with(key), "{error}");
        }
    }
}
