//! Feeds arbitrary JSON to the role policy parser, which reads documents users upload
//! (refusing any key named twice), and evaluates what it accepts against arbitrary
//! credentials.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::domain::policy::{
    credential_reference, Action, CredentialFacts, CredentialRef, Decision, Effect, Policy,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same text is also a credential reference as a caller names it.
    if let Ok(reference) = CredentialRef::parse(text) {
        if let Some(workspace) = &reference.workspace {
            let full = credential_reference(workspace, &reference.name);
            assert_eq!(
                CredentialRef::parse(&full).ok(),
                Some(reference.clone()),
                "{text:?}"
            );
        }
    }
    // Users' text goes through `parse_json`, which refuses a key named twice; what it
    // accepts is exactly what the parser reads from the same document as a value.
    let from_text = Policy::parse_json(data);
    if let Err(error) = &from_text {
        if error.code() == "duplicate_key" {
            return;
        }
    }
    let Ok(document) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let parsed = Policy::parse(&document);
    assert_eq!(parsed.as_ref().ok(), from_text.as_ref().ok(), "{text:?}");
    let Ok(policy) = parsed else {
        return;
    };
    // What users read back must parse to the same policy, and the stored form too.
    assert_eq!(
        Policy::parse(&policy.document()).ok().as_ref(),
        Some(&policy),
        "{text:?}"
    );
    let stored = serde_json::to_string(&policy).expect("a policy serialises");
    assert_eq!(
        serde_json::from_str::<Policy>(&stored).expect("the stored form parses"),
        policy
    );

    // Credentials to decide about: some fixed ones, and the names each pattern matches
    // with its wildcards filled in.
    let mut subjects: Vec<(String, String)> = vec![
        ("acme/ci".into(), "ecr".into()),
        ("~bob".into(), "x".into()),
    ];
    for statement in &policy.statements {
        for resource in &statement.resources {
            if let Some(rest) = resource.pattern.strip_prefix("rk:") {
                if let Some((workspace, path)) = rest.split_once(':') {
                    let name = path.trim_start_matches("credential/");
                    subjects.push((workspace.replace('*', "a"), name.replace('*', "a")));
                    subjects.push((workspace.replace('*', ""), name.replace('*', "")));
                }
            }
        }
    }
    for (workspace, name) in &subjects {
        let facts = CredentialFacts {
            workspace,
            name,
            id: "id-1",
        };
        for action in Action::ALL {
            let decision = policy.evaluate(action, &facts);
            match decision {
                Decision::Allow { statement } => {
                    assert_eq!(policy.statements[statement].effect, Effect::Allow);
                    // A role allowed something in a workspace can see into it.
                    assert!(policy.may_reach(action, workspace), "{text:?} {workspace}");
                }
                Decision::ExplicitDeny { statement } => {
                    assert_eq!(policy.statements[statement].effect, Effect::Deny);
                }
                Decision::ImplicitDeny => {}
            }
        }
    }
    // Deny by default: a policy of Deny statements alone allows nothing.
    if policy
        .statements
        .iter()
        .all(|statement| statement.effect == Effect::Deny)
    {
        for (workspace, name) in &subjects {
            let facts = CredentialFacts {
                workspace,
                name,
                id: "id-1",
            };
            assert!(!policy.evaluate(Action::Resolve, &facts).allowed());
        }
    }
});
