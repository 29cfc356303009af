CREATE TABLE renewals (
	id VARCHAR(36) NOT NULL,
	veteran_id VARCHAR(64) NOT NULL,
	prescription_id VARCHAR(64) NOT NULL,
	ehr VARCHAR(16) NOT NULL,
	cohort VARCHAR(8) NOT NULL,
	source VARCHAR(8) NOT NULL,
	idempotency_key VARCHAR(255),
	open_key VARCHAR(130),
	refusal VARCHAR(64),
	trace_id VARCHAR(32),
	status VARCHAR(32) NOT NULL,
	status_since DATETIME NOT NULL,
	created_at DATETIME NOT NULL,
	stalled_at DATETIME,
	stalled_step VARCHAR(32),
	stalled_tool VARCHAR(8),
	PRIMARY KEY (id),
	UNIQUE (idempotency_key),
	UNIQUE (open_key)
);

CREATE INDEX ix_renewals_veteran_id ON renewals (veteran_id);

CREATE INDEX ix_renewals_status ON renewals (status);

CREATE TABLE journey_steps (
	event_id VARCHAR(36) NOT NULL,
	renewal_id VARCHAR(36) NOT NULL,
	step VARCHAR(32) NOT NULL,
	tool VARCHAR(8) NOT NULL,
	occurred_at DATETIME NOT NULL,
	recorded_at DATETIME NOT NULL,
	error_code VARCHAR(64),
	retryable BOOLEAN,
	detail VARCHAR(1000),
	source_topic VARCHAR(255),
	PRIMARY KEY (event_id),
	FOREIGN KEY(renewal_id) REFERENCES renewals (id)
);

CREATE INDEX ix_journey_steps_renewal_id ON journey_steps (renewal_id);

CREATE TABLE outbox (
	id INTEGER NOT NULL,
	event_id VARCHAR(36) NOT NULL,
	topic VARCHAR(255) NOT NULL,
	"key" BLOB NOT NULL,
	value BLOB NOT NULL,
	headers JSON NOT NULL,
	created_at DATETIME NOT NULL,
	published_at DATETIME,
	refused_reason VARCHAR(200),
	PRIMARY KEY (id),
	UNIQUE (event_id)
);

CREATE INDEX ix_outbox_published_at ON outbox (published_at);

CREATE TABLE processed_events (
	consumer_group VARCHAR(128) NOT NULL,
	event_id VARCHAR(36) NOT NULL,
	processed_at DATETIME NOT NULL,
	PRIMARY KEY (consumer_group, event_id)
);
