//! The dead-letter tools: browse (`browse`), move back for another try, all
//! or one (`redrive`), and purge (`purge`). Admin routes: only with
//! `ADMIN_TOKEN` set (404 otherwise) and presented as
//! `Authorization: Bearer <ADMIN_TOKEN>` (the route table says so).

pub mod browse;
mod params;
pub mod purge;
pub mod redrive;
