CREATE TABLE message_drafts (
	id VARCHAR(36) NOT NULL,
	veteran_id VARCHAR(64) NOT NULL,
	renewal_id VARCHAR(36),
	state VARCHAR(16) NOT NULL,
	category VARCHAR(32) NOT NULL,
	subject VARCHAR(50) NOT NULL,
	body TEXT NOT NULL,
	recipient_id INTEGER,
	station_number VARCHAR(8),
	ehr VARCHAR(16),
	team_selection VARCHAR(32),
	platform VARCHAR(16),
	prescription_id VARCHAR(64),
	care_systems JSON NOT NULL,
	picker VARCHAR(16),
	suggested_team_id INTEGER,
	cohort VARCHAR(8) NOT NULL,
	traceparent VARCHAR(55),
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (renewal_id)
);

CREATE INDEX ix_message_drafts_veteran_id ON message_drafts (veteran_id);

CREATE TABLE message_sends (
	draft_id VARCHAR(36) NOT NULL,
	veteran_id VARCHAR(64) NOT NULL,
	renewal_id VARCHAR(36),
	attempt INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	message_id VARCHAR(128),
	recipient_id INTEGER NOT NULL,
	station_number VARCHAR(8) NOT NULL,
	ehr VARCHAR(16) NOT NULL,
	category VARCHAR(32) NOT NULL,
	team_selection VARCHAR(32),
	platform VARCHAR(16),
	cohort VARCHAR(8) NOT NULL,
	error_code VARCHAR(16),
	retryable BOOLEAN,
	sent_event_id VARCHAR(36),
	started_at DATETIME NOT NULL,
	sent_at DATETIME,
	PRIMARY KEY (draft_id)
);

CREATE INDEX ix_message_sends_renewal_id ON message_sends (renewal_id);

CREATE INDEX ix_message_sends_veteran_id ON message_sends (veteran_id);

CREATE TABLE builtin_sm_messages (
	id VARCHAR(64) NOT NULL,
	idempotency_key VARCHAR(80) NOT NULL,
	veteran_id VARCHAR(64) NOT NULL,
	draft_id VARCHAR(36) NOT NULL,
	recipient_id INTEGER NOT NULL,
	category VARCHAR(32) NOT NULL,
	subject VARCHAR(50) NOT NULL,
	body TEXT NOT NULL,
	prescription_id VARCHAR(64),
	status VARCHAR(16) NOT NULL,
	received_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_builtin_sm_messages_draft_id ON builtin_sm_messages (draft_id);

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
