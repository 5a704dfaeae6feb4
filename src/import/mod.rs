//! Bringing environments from elsewhere under Paved: `ade` (SPEC 15), Azure Deployment
//! Environments' projects through its data plane.

pub mod ade;
