//! The server (`fleetkit serve`): enrollment, device inventory and policy distribution
//! over HTTPS with device client certificates, on SQLite or PostgreSQL.
