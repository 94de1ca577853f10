//! Building and running the producer: migrations, pool, publisher, HTTP server.
//!
//! The HTTP server is actix-web's `App` served by actix's HTTP/1 service,
//! assembled here rather than by `HttpServer` so that each connection is
//! wrapped in `http::head::HeadDeadline` (which replaces actix's request
//! head timeout: see there why). HTTP/1 only: the producer is built
//! without HTTP/2.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{fn_service, AppConfig, Server, ServerHandle};
use actix_web::{web, App};
use anyhow::Context;
use shared::retention::Retention;
use tokio::sync::watch;

use crate::config::Settings;
use crate::http::access::ApiAccess;
use crate::http::extract::{body_deadline, json_config, path_config, query_config, BodyTimeout};
use crate::http::head::HeadDeadline;
use crate::http::headers::security_headers;
use crate::management::InFlight;
use crate::metrics::Metrics;
use crate::publisher::{Publisher, PublisherConfig};
use crate::routes;
use crate::slots::Slots;
use crate::state::AppState;

/// A built producer, bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    publisher: Publisher,
    publisher_task: tokio::task::JoinHandle<()>,
    /// Pruning expired idempotency keys, until shutdown.
    retention_task: tokio::task::JoinHandle<()>,
    /// Publishing scheduled messages when due, until shutdown.
    dispatcher_task: tokio::task::JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Migrate the database, start the publisher and bind the HTTP listener.
    /// Fails only on what retrying cannot fix (bad address, migrations that
    /// cannot run within `STARTUP_TIMEOUT_MS`). A broker that is down is not
    /// fatal: the producer starts, answers 503 and connects when it can.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let pool = shared::migrate::migrate_and_pool(common)
            .await
            .map_err(anyhow::Error::msg)?;
        // One registry per application, not the global one: tests run
        // several producers in one process.
        let metrics = Arc::new(Metrics::new(&common.kinds)?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (publisher, publisher_task) = crate::publisher::start(
            PublisherConfig {
                nodes: common.amqp_nodes.clone(),
                topology: common.topology(),
                channels: settings.publish_channels,
                publish_timeout: settings.publish_timeout,
                connect_timeout: common.amqp_timeout,
            },
            metrics.clone(),
            shutdown_rx,
        );
        let retention = Retention::new(
            &common.database_url,
            settings.retention.schedule,
            settings.retention.producer_rules(),
            shared::db::lock::PRODUCER_RETENTION,
        )
        .with_metrics(metrics.retention.clone(), false);
        let retention_task = tokio::spawn(retention.run(shutdown.subscribe()));
        let dispatcher = crate::schedule::dispatcher::Dispatcher::new(
            &common.database_url,
            publisher.clone(),
            settings.schedule.clone(),
            metrics.schedule.clone(),
        );
        let dispatcher_task = tokio::spawn(dispatcher.run(shutdown.subscribe()));
        if !publisher.wait_connected(common.amqp_timeout).await {
            log::warn!(
                "RabbitMQ at {} is not reachable yet; serving 503s until it is",
                common.amqp_url_redacted
            );
        }

        let listener = TcpListener::bind(&settings.bind_addr)
            .with_context(|| format!("cannot listen on BIND_ADDR={}", settings.bind_addr))?;
        let local = listener.local_addr()?;
        let port = local.port();
        let state = AppState {
            publisher: publisher.clone(),
            pool,
            retry_after_secs: settings.retry_after_secs,
            metrics,
            webhook_hosts: settings.webhook_allowed_hosts.clone(),
            webhook_keys: settings.webhook_keys.clone(),
            streams: Slots::new("open event streams", "MAX_STREAMS", settings.max_streams),
            waiters: Slots::new("waiting lookups", "MAX_WAITERS", settings.max_waiters),
            idempotency_key_ttl: settings.common.idempotency_key_ttl,
            retention: settings.retention.clone(),
            max_schedule_ahead: settings.schedule.max_ahead,
        };
        let max_body = settings.max_body_bytes;
        let max_batch_body = settings.max_batch_body_bytes;
        let api_access = web::Data::<ApiAccess>::new(settings.api_access.clone());
        let admin_token = web::Data::new(settings.admin_token.clone());
        let document = web::Data::new(crate::openapi::document(&routes::entries(), &common.kinds));
        // The dashboard's in-flight count: the store queue, in the vhost of `AMQP_URL`.
        let in_flight = web::Data::new(InFlight::new(
            settings.rabbitmq_management.as_ref(),
            common.amqp_nodes.vhost(),
            &common.topology().store_queue,
        )?);
        let body_timeout = web::Data::new(BodyTimeout(settings.body_timeout));
        let head_timeout = settings.head_timeout;
        let app = move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(json_config(max_body))
                .app_data(query_config())
                .app_data(path_config())
                // Each route carries its own access guard (see `routes`).
                .configure(|cfg| routes::configure(cfg, max_batch_body))
                .app_data(api_access.clone())
                .app_data(admin_token.clone())
                .app_data(in_flight.clone())
                .app_data(body_timeout.clone())
                .app_data(document.clone())
                .wrap(actix_web::middleware::from_fn(body_deadline))
                // Outermost: every answer, errors included.
                .wrap(actix_web::middleware::from_fn(security_headers))
        };
        let builder = actix_web::dev::Server::build()
            .workers(settings.http_workers)
            // On SIGTERM, in-flight requests get as long as a publish may
            // take; then long-lived SSE streams are cut instead of holding
            // the stop.
            .shutdown_timeout(settings.publish_timeout.as_secs() + 1);
        let draining = builder.graceful_shutdown_signal();
        let server = builder
            .listen("producer", listener, move || {
                let draining = draining.clone();
                let http = actix_http::HttpService::build()
                    // Stop keeping connections alive once stopping.
                    .graceful_shutdown_signal(move || {
                        let draining = draining.clone();
                        async move { draining.notified().await }
                    })
                    // Replaced by `HeadDeadline` around the connection.
                    .client_request_timeout(Duration::ZERO)
                    .local_addr(local)
                    // The app's connection config (host and address for
                    // URLs a request does not give): unused, the default.
                    .h1(map_config(app().into_factory(), |_| AppConfig::default()));
                fn_service(move |io: tokio::net::TcpStream| {
                    let peer = io.peer_addr().ok();
                    std::future::ready(Ok::<_, actix_http::error::DispatchError>((
                        HeadDeadline::new(io, head_timeout),
                        peer,
                    )))
                })
                .and_then(http)
            })?
            .run();
        log::info!("{}", settings.api_access.describe());
        log::info!("producer listening on port {port}");
        Ok(Self {
            port,
            server,
            publisher,
            publisher_task,
            retention_task,
            dispatcher_task,
            shutdown,
        })
    }

    /// The bound port (useful with `BIND_ADDR=127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully from elsewhere (tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The publisher (for readiness checks in tests).
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Serve until SIGINT/SIGTERM (or a stop through [`Self::handle`]): actix
    /// stops accepting, lets in-flight requests finish (each still waits
    /// for its confirm), then the broker connection is closed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.shutdown.send(true);
        let _ = self.publisher_task.await;
        let _ = self.retention_task.await;
        let _ = self.dispatcher_task.await;
        log::info!("producer stopped");
        result
    }
}
