//! The dead-letter tools: browse (`browse`), move back for another try, all
//! or one (`redrive`), and purge (`purge`); the letters browse and redrive
//! only looked at go back in their order (`hand_back`). Admin routes: only with
//! `ADMIN_TOKEN` set (404 otherwise) and presented as
//! `Authorization: Bearer <ADMIN_TOKEN>` (the route table says so).

pub mod browse;
mod hand_back;
mod params;
pub mod purge;
pub mod redrive;
