//! Who may do what in a workspace. Every admin route asks one of these before it acts.

use crate::model::Role;

/// A user's standing in one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    /// A source collaborator's sources.
    pub sources: Vec<String>,
}

impl Access {
    fn writer(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Member)
    }

    /// Sees the source (and so its settings and the destinations it feeds).
    pub fn can_see_source(&self, source_id: &str) -> bool {
        self.role != Role::SourceCollaborator || self.sources.iter().any(|s| s == source_id)
    }

    pub fn can_create_source(&self) -> bool {
        self.writer()
    }

    pub fn can_change_source(&self, source_id: &str) -> bool {
        self.writer() || (self.role == Role::SourceCollaborator && self.can_see_source(source_id))
    }

    /// Sees a destination: a collaborator sees those fed by one of its sources.
    pub fn can_see_destination(&self, sources: &[String]) -> bool {
        self.role != Role::SourceCollaborator || sources.iter().any(|s| self.can_see_source(s))
    }

    /// Changes a destination (before and after the change): a collaborator only
    /// one fed by its sources alone, so it can't reach another team's data.
    pub fn can_change_destination(&self, sources: &[String]) -> bool {
        self.writer()
            || (self.role == Role::SourceCollaborator
                && !sources.is_empty()
                && sources.iter().all(|s| self.can_see_source(s)))
    }

    pub fn can_manage_members(&self) -> bool {
        self.role == Role::Owner
    }

    /// The audit log and the member list: everyone but a source collaborator.
    pub fn can_see_workspace(&self) -> bool {
        self.role != Role::SourceCollaborator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collaborator_reaches_only_its_sources_and_what_only_they_feed() {
        let collaborator = Access {
            role: Role::SourceCollaborator,
            sources: vec!["web".into()],
        };
        assert!(collaborator.can_change_source("web") && !collaborator.can_change_source("ios"));
        assert!(!collaborator.can_create_source());
        assert!(collaborator.can_change_destination(&["web".into()]));
        assert!(!collaborator.can_change_destination(&["web".into(), "ios".into()]));
        assert!(collaborator.can_see_destination(&["web".into(), "ios".into()]));
        assert!(!collaborator.can_see_destination(&["ios".into()]));
        let reader = Access {
            role: Role::ReadOnly,
            sources: vec![],
        };
        assert!(reader.can_see_source("ios") && !reader.can_change_source("ios"));
        assert!(reader.can_see_workspace() && !reader.can_manage_members());
    }
}
