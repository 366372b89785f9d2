"""One settings module, driven by the environment.

With nothing set it runs embedded: SQLite (WAL) under ``var/`` and Celery's filesystem broker. With
``DATABASE_URL`` and ``CELERY_BROKER_URL``/``REDIS_URL`` it runs on PostgreSQL and Redis. Every setting is
listed in docs/configuration.md.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env beside manage.py (written by `make run` on first start; ENV_FILE names another) fills in what the
# environment leaves out: an exported value always wins.
environ.Env.read_env(os.environ.get("ENV_FILE") or BASE_DIR / ".env", overwrite=False)

# Runtime files of the embedded mode (SQLite, the filesystem broker, beat's schedule, static files). Created when
# the apps are ready (config.apps), not here: importing settings writes nothing.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
# No default in production: the system check in receipts.checks refuses to start without one.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - only ever used with DEBUG on
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.ProjectConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rangefilter",
    "axes",
    "receipts.apps.ReceiptsConfig",
    "campaigns.apps.CampaignsConfig",
    "crm_sync.apps.CrmSyncConfig",
    # Development, demo and tests: the provider simulator and the fake CRM (never imported by the product).
    *(["simulator.apps.SimulatorConfig"] if env.bool("INSTALL_SIMULATOR", default=True) else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.busy.DatabaseBusyMiddleware",  # a busy database answers 503 with Retry-After, not 500
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.alerts.firing_alerts",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'receipts.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of deadlocking on upgrade.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
    )
    # Tests on SQLite use a file (not :memory:) so that threads share it; one per test run, so that two runs
    # on one machine do not delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_receipts_{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # Off by default: the check is a SELECT 1 before every request's first query (a tenth of a webhook's cost).
    # A connection the server closed while idle fails its next request instead; the webhooks retry that on a
    # fresh connection (receipts.webhooks.receive), other requests answer 500 once.
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=False))
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
# A web request's statements are cancelled by PostgreSQL after WEB_STATEMENT_TIMEOUT seconds, below Caddy's
# WEB_UPSTREAM_TIMEOUT (150 s): a request Caddy gave up on does not leave its query running. Only in the web
# process (config/wsgi.py marks it); Celery's tasks have their own time limits. 0 turns it off.
WEB_STATEMENT_TIMEOUT = env.float("WEB_STATEMENT_TIMEOUT", default=120)
if (
    os.environ.get("RECEIPTS_PROCESS") == "web"
    and DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    and WEB_STATEMENT_TIMEOUT > 0
):
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _timeout = f"-c statement_timeout={int(WEB_STATEMENT_TIMEOUT * 1000)}"
    _options["options"] = f"{_options.get('options', '')} {_timeout}".strip()
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (Redis when REDIS_URL is set) -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ----------------------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://localhost/")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "store_processed": False,
        "polling_interval": 0.2,
        "control_folder": str(BROKER_DIR / "control"),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task not acknowledged (its worker died) comes back after this long; the inbox sweeper is faster.
        "visibility_timeout": 600,
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
    }
# Several deployments can share one Redis: each reads its own queues. Three of them, so that no kind of work
# waits behind another: the inbox (drains, sweeps and the other upkeep) on CELERY_QUEUE, the CRM relay on
# CELERY_QUEUE.crm, the per-message and high-priority polls on CELERY_QUEUE.poll, sending on CELERY_QUEUE.send (its
# tasks wait for the providers' tokens). A worker consumes the ones WORKER_QUEUES names (all four by default);
# `make run` gives the inbox a worker of its own, and sending another (docs/operating.md).
CELERY_QUEUE = env.str("CELERY_QUEUE", default="receipts")
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE
WORK_QUEUES = {
    "inbox": CELERY_QUEUE,
    "crm": f"{CELERY_QUEUE}.crm",
    "poll": f"{CELERY_QUEUE}.poll",
    "send": f"{CELERY_QUEUE}.send",
}
WORKER_QUEUES = env.list("WORKER_QUEUES", default=list(WORK_QUEUES))
if unknown_queues := set(WORKER_QUEUES) - set(WORK_QUEUES):
    raise ImproperlyConfigured(f"WORKER_QUEUES: unknown {sorted(unknown_queues)}; use inbox, crm, poll, send")
# One direct exchange named after CELERY_QUEUE (Celery's own default), each queue bound by its own name.
CELERY_TASK_DEFAULT_EXCHANGE = CELERY_QUEUE
CELERY_TASK_DEFAULT_ROUTING_KEY = CELERY_QUEUE
# Every process declares all three (a publisher routes to any of them); a worker consumes only its WORKER_QUEUES
# (config/celery.py narrows it as `celery worker -Q` would).
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(CELERY_QUEUE, type="direct"), routing_key=name) for name in WORK_QUEUES.values()
]
CELERY_TASK_ROUTES = {
    "crm_sync.relay_outbox": {"queue": WORK_QUEUES["crm"], "routing_key": WORK_QUEUES["crm"]},
    "crm_sync.prune_outbox": {"queue": WORK_QUEUES["crm"], "routing_key": WORK_QUEUES["crm"]},
    "receipts.poll_high_priority": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
    "receipts.poll_messages": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
    # Calls to the providers, like polling: never in the way of the inbox.
    "campaigns.dispatch_sends": {"queue": WORK_QUEUES["send"], "routing_key": WORK_QUEUES["send"]},
    "campaigns.dispatch_provider": {"queue": WORK_QUEUES["send"], "routing_key": WORK_QUEUES["send"]},
    # Planning, fallbacks and the settling of dead workers' sends call no provider: they never wait for a process
    # behind the sending loops, which may hold every one of the sending worker's for 20 s.
    "campaigns.plan_campaigns": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
    "campaigns.fall_back": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
    "campaigns.reconcile_sends": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
    # Minutes on its first run over a big table: never in the way of the inbox.
    "receipts.refresh_rollups": {"queue": WORK_QUEUES["poll"], "routing_key": WORK_QUEUES["poll"]},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# --- receipts pipeline -----------------------------------------------------------------------------------
WEBHOOK_MAX_BODY = env.int("WEBHOOK_MAX_BODY", default=1024 * 1024)
# The API's and the admin's bodies (the webhooks check WEBHOOK_MAX_BODY themselves): 10,000 contacts with their
# attributes in one POST /api/v1/contacts/ come to a few MiB.
API_MAX_BODY = env.int("API_MAX_BODY", default=16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY
WEBHOOK_SECRET_GENESYS_CLOUD = env.list("WEBHOOK_SECRET_GENESYS_CLOUD", default=[])
WEBHOOK_SECRET_GENESYS_SMS = env.list("WEBHOOK_SECRET_GENESYS_SMS", default=[])
WEBHOOK_SECRET_WEBEX_CONNECT = env.list("WEBHOOK_SECRET_WEBEX_CONNECT", default=[])
WEBHOOK_SECRET_GENERIC = env.list("WEBHOOK_SECRET_GENERIC", default=[])
WEBHOOK_BASIC_AUTH = env.list("WEBHOOK_BASIC_AUTH", default=[])
WEBHOOK_TIMESTAMP_TOLERANCE = env.int("WEBHOOK_TIMESTAMP_TOLERANCE", default=300)

INBOX_BATCH_SIZE = env.int("INBOX_BATCH_SIZE", default=500)
INBOX_MAX_ATTEMPTS = env.int("INBOX_MAX_ATTEMPTS", default=5)
INBOX_RETRY_BASE = timedelta(seconds=env.float("INBOX_RETRY_BASE", default=10.0))
INBOX_RETRY_MAX = timedelta(seconds=env.float("INBOX_RETRY_MAX", default=3600.0))
INBOX_DRAIN_SECONDS = env.float("INBOX_DRAIN_SECONDS", default=20.0)
# Processed raw bodies are deleted after this many days (hourly, in batches; 0 keeps them all). Their facts stay
# on the messages' timelines; rejected, dead and unmatched rows stay for the operators.
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=30)
# Messages (with their timelines) older than this are deleted, hourly in batches; 0 keeps everything.
MESSAGE_RETENTION_DAYS = env.int("MESSAGE_RETENTION_DAYS", default=400)
# A provider with messages in flight and no receipt for this long is shown silent on the dashboard.
PROVIDER_SILENT_MINUTES = env.float("PROVIDER_SILENT_MINUTES", default=15.0)
# --- sending (campaigns/dispatch.py) ---
SEND_DISPATCH_INTERVAL = env.float("SEND_DISPATCH_INTERVAL", default=5.0)
SEND_CLAIM_TIMEOUT = env.float("SEND_CLAIM_TIMEOUT", default=300.0)
SEND_BATCH = env.int("SEND_BATCH", default=20)  # sends one worker claims at a time
SEND_LOOPS_PER_PROVIDER = env.int("SEND_LOOPS_PER_PROVIDER", default=1)  # workers sending for one provider at once
SEND_RECONCILE_INTERVAL = env.float("SEND_RECONCILE_INTERVAL", default=60.0)  # beat: settle sends of dead workers
SEND_MAX_WAIT = env.float("SEND_MAX_WAIT", default=5.0)  # seconds a worker waits for a token before giving back
SEND_MAX_ATTEMPTS = env.int("SEND_MAX_ATTEMPTS", default=5)  # a send nothing took is tried this often
SEND_RETRY_DELAY = env.float("SEND_RETRY_DELAY", default=30.0)  # the first retry's wait, doubled each time
# Sends a second each provider takes (0: no bucket of ours; Genesys Cloud's client keeps its API budget anyway),
# and each sender id / from-address (0: off). SEND_RATE_HEADROOM of it is kept free.
SEND_RATE_GENESYS_CLOUD = env.float("SEND_RATE_GENESYS_CLOUD", default=0.0)
SEND_RATE_GENESYS_SMS = env.float("SEND_RATE_GENESYS_SMS", default=20.0)
SEND_RATE_WEBEX_CONNECT = env.float("SEND_RATE_WEBEX_CONNECT", default=20.0)
SEND_RATE_PER_SENDER = env.float("SEND_RATE_PER_SENDER", default=0.0)
SEND_RATE_HEADROOM = env.float("SEND_RATE_HEADROOM", default=0.04)
SEND_RATE_WINDOW = env.float("SEND_RATE_WINDOW", default=10.0)
# Sender ids and from-addresses a campaign may use besides the configured defaults: "provider:sender" or "sender".
SENDER_ALLOW_LIST = env.list("SENDER_ALLOW_LIST", default=[])
# The failure-rate breaker: a campaign whose send attempts fail more than this share over the window pauses.
CAMPAIGN_FAILURE_RATE_MAX = env.float("CAMPAIGN_FAILURE_RATE_MAX", default=0.15)
CAMPAIGN_FAILURE_WINDOW = env.float("CAMPAIGN_FAILURE_WINDOW", default=300.0)
CAMPAIGN_FAILURE_MIN_SENDS = env.int("CAMPAIGN_FAILURE_MIN_SENDS", default=20)

# --- alerts (config/alerts.py): checked by beat; open ones shown in the admin, sent to a webhook and by mail ---
ALERT_INTERVAL = env.float("ALERT_INTERVAL", default=60.0)
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_LINK_BASE = env.str("ALERT_LINK_BASE", default="http://127.0.0.1:8000")
ALERT_DELIVERY_RATE_MIN = env.float("ALERT_DELIVERY_RATE_MIN", default=0.9)
ALERT_BOUNCE_RATE_MAX = env.float("ALERT_BOUNCE_RATE_MAX", default=0.05)
ALERT_COMPLAINT_RATE_MAX = env.float("ALERT_COMPLAINT_RATE_MAX", default=0.001)
ALERT_MIN_FINAL = env.int("ALERT_MIN_FINAL", default=20)
ALERT_REVIEW_QUEUE_MAX = env.int("ALERT_REVIEW_QUEUE_MAX", default=500)
ALERT_CRM_LAG_MINUTES = env.float("ALERT_CRM_LAG_MINUTES", default=10.0)
# How mail leaves (alerts): smtp://user:password@host:587 (with ?tls=True), or consolemail:// to print it.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://localhost:25")
EMAIL_BACKEND = EMAIL_CONFIG["EMAIL_BACKEND"]
EMAIL_HOST = EMAIL_CONFIG.get("EMAIL_HOST", "")
EMAIL_PORT = EMAIL_CONFIG.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = EMAIL_CONFIG.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = EMAIL_CONFIG.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = EMAIL_CONFIG.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = EMAIL_CONFIG.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="receipts@localhost")
# Seconds between two refreshes of the delivery rollups the dashboard and campaign statistics read.
ROLLUP_INTERVAL = env.float("ROLLUP_INTERVAL", default=60.0)
# After a batch smaller than a quarter of INBOX_BATCH_SIZE, a drain waits this long (seconds) for more rows to
# arrive before claiming again: under load, fewer and bigger batches; an idle inbox still ends the drain at once.
INBOX_LINGER = env.float("INBOX_LINGER", default=0.05)
# A web process asks for an inbox drain at most this often (seconds); the sweeper covers the rest.
INBOX_KICK_DEBOUNCE = env.float("INBOX_KICK_DEBOUNCE", default=0.25)
# Beat: the inbox sweeper (rows no kick reached) and the receipt timeout check, in seconds.
SWEEP_INTERVAL = env.float("SWEEP_INTERVAL", default=5.0)
RECEIPT_TIMEOUT_CHECK_INTERVAL = env.float("RECEIPT_TIMEOUT_CHECK_INTERVAL", default=60.0)
ORPHAN_WINDOW = timedelta(hours=env.float("ORPHAN_WINDOW_HOURS", default=24.0))
# No final receipt this long after sent: delivered, assumed, flagged no_receipt (receipts.actions.review).
RECEIPT_TIMEOUT = timedelta(hours=env.float("RECEIPT_TIMEOUT_HOURS", default=24.0))
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="US")

# --- polling and provider limits (receipts/polling.py, schedule.py, providers/limits.py, genesys_cloud/client.py)
# Genesys Cloud account: region by name (us-east-1, eu-west-1, ...) or domain (mypurecloud.ie); the base URLs
# override it (the simulator, a proxy). Without a client id and secret nothing is polled.
GENESYS_CLOUD_REGION = env.str("GENESYS_CLOUD_REGION", default="us-east-1")
GENESYS_CLOUD_BASE_URL = env.str("GENESYS_CLOUD_BASE_URL", default="")
GENESYS_CLOUD_LOGIN_URL = env.str("GENESYS_CLOUD_LOGIN_URL", default="")
GENESYS_CLOUD_CLIENT_ID = env.str("GENESYS_CLOUD_CLIENT_ID", default="")
GENESYS_CLOUD_CLIENT_SECRET = env.str("GENESYS_CLOUD_CLIENT_SECRET", default="")
GENESYS_CLOUD_TIMEOUT = env.float("GENESYS_CLOUD_TIMEOUT", default=10.0)
# The shared token bucket: at most limit * (1 - headroom) requests in any window, across every process.
GENESYS_RATE_LIMIT_PER_MINUTE = env.int("GENESYS_RATE_LIMIT_PER_MINUTE", default=300)
GENESYS_RATE_HEADROOM = env.float("GENESYS_RATE_HEADROOM", default=0.2)
GENESYS_RATE_BURST = env.int("GENESYS_RATE_BURST", default=10)
GENESYS_RATE_WINDOW = env.float("GENESYS_RATE_WINDOW", default=60.0)
GENESYS_MAX_WAIT = env.float("GENESYS_MAX_WAIT", default=30.0)
CIRCUIT_FAILURE_THRESHOLD = env.int("CIRCUIT_FAILURE_THRESHOLD", default=5)
CIRCUIT_COOLDOWN_SECONDS = env.float("CIRCUIT_COOLDOWN_SECONDS", default=30.0)
# High-priority tier: first poll POLL_FIRST_DELAY after registration, then x POLL_BACKOFF up to POLL_MAX_DELAY.
POLL_FIRST_DELAY = timedelta(seconds=env.float("POLL_FIRST_DELAY", default=10.0))
POLL_BACKOFF = env.float("POLL_BACKOFF", default=2.0)
POLL_MAX_DELAY = timedelta(seconds=env.float("POLL_MAX_DELAY", default=60.0))
# Beat runs the high-priority tier this often (seconds).
POLL_TICK_SECONDS = env.float("POLL_TICK_SECONDS", default=5.0)
POLL_HIGH_MAX_AGE = timedelta(minutes=env.float("POLL_HIGH_MAX_AGE_MINUTES", default=60.0))
POLL_BATCH_SIZE = env.int("POLL_BATCH_SIZE", default=50)
# Genesys Cloud answering 404 for a message this long after it was sent: flagged provider_unknown for review.
POLL_NOT_FOUND_GRACE = timedelta(minutes=env.float("POLL_NOT_FOUND_GRACE_MINUTES", default=5.0))
# Bulk tier: one reconciliation round every BULK_RECONCILE_INTERVAL seconds.
BULK_RECONCILE_INTERVAL = env.float("BULK_RECONCILE_INTERVAL", default=300.0)
POLL_BULK_FALLBACK_REQUESTS = env.int("POLL_BULK_FALLBACK_REQUESTS", default=20)
POLL_ANALYTICS_PAGE_SIZE = env.int("POLL_ANALYTICS_PAGE_SIZE", default=1000)
POLL_ANALYTICS_JOB_POLL_INTERVAL = env.float("POLL_ANALYTICS_JOB_POLL_INTERVAL", default=2.0)
POLL_ANALYTICS_JOB_TIMEOUT = env.float("POLL_ANALYTICS_JOB_TIMEOUT", default=240.0)
# /metrics answers only with "Authorization: Bearer <METRICS_TOKEN>" when set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- suppression list, retry policy, escalations (receipts/actions/suppression.py, effects.py, retries.py) -
SUPPRESS_HARD_BOUNCE = env.bool("SUPPRESS_HARD_BOUNCE", default=True)
SOFT_BOUNCE_THRESHOLD = env.int("SOFT_BOUNCE_THRESHOLD", default=3)  # 0 turns soft-bounce suppression off
SOFT_BOUNCE_WINDOW_DAYS = env.float("SOFT_BOUNCE_WINDOW_DAYS", default=7.0)
SOFT_BOUNCE_SUPPRESS_DAYS = env.float("SOFT_BOUNCE_SUPPRESS_DAYS", default=30.0)
SOFT_BOUNCE_WINDOW = timedelta(days=SOFT_BOUNCE_WINDOW_DAYS)
SOFT_BOUNCE_SUPPRESS = timedelta(days=SOFT_BOUNCE_SUPPRESS_DAYS)
SUPPRESS_COMPLAINT = env.bool("SUPPRESS_COMPLAINT", default=True)
SUPPRESS_SMS_INVALID_DESTINATION = env.bool("SUPPRESS_SMS_INVALID_DESTINATION", default=True)
SUPPRESSION_CHECK_MAX = env.int("SUPPRESSION_CHECK_MAX", default=10000)
RETRY_MAX = env.int("RETRY_MAX", default=1)
RETRY_DELAY = timedelta(seconds=env.float("RETRY_DELAY", default=120.0))
FALLBACK_AFTER = timedelta(seconds=env.float("FALLBACK_AFTER", default=600.0))
ESCALATION_LOOKBACK = timedelta(hours=env.float("ESCALATION_LOOKBACK_HOURS", default=24.0))
# provider=dotted.path.to.SenderClass, comma-separated (receipts.providers.senders); code can also
# register_sender().
SENDERS = env.dict("SENDERS", default={})
# Beat: due retries, escalations and expired suppressions are looked for this often (seconds).
RETRY_SWEEP_INTERVAL = env.float("RETRY_SWEEP_INTERVAL", default=10.0)
ESCALATION_SWEEP_INTERVAL = env.float("ESCALATION_SWEEP_INTERVAL", default=30.0)
SUPPRESSION_EXPIRY_INTERVAL = env.float("SUPPRESSION_EXPIRY_INTERVAL", default=300.0)
# Campaign fallbacks (campaigns/fallback.py): beat looks this often (seconds) for escalations of campaign messages
# whose campaign names a fallback channel; escalations raised longer ago than FALLBACK_MAX_AGE_MINUTES get none.
FALLBACK_SWEEP_INTERVAL = env.float("FALLBACK_SWEEP_INTERVAL", default=30.0)
FALLBACK_MAX_AGE = timedelta(minutes=env.float("FALLBACK_MAX_AGE_MINUTES", default=60.0))
# Reply confirmations (receipts/actions/confirmations.py): an inbound reply that is one of these words (trimmed,
# any case) confirms the latest message to the address on its channel, sent within the window before the reply.
CONFIRM_WORDS = env.list("CONFIRM_WORDS", default=["YES", "Y", "CONFIRM", "OK"])
CONFIRMATION_WINDOW = timedelta(hours=env.float("CONFIRMATION_WINDOW_HOURS", default=72.0))

# --- CRM sync (crm_sync: outbox, relay, adapters, change feed) -------------------------------------------
CRM_BACKEND = env.str("CRM_BACKEND", default="none")  # none | generic | salesforce
CRM_URL = env.str("CRM_URL", default="")
CRM_SIGNING_SECRET = env.str("CRM_SIGNING_SECRET", default="")
CRM_TIMEOUT = env.float("CRM_TIMEOUT", default=10.0)
CRM_BATCH_SIZE = env.int("CRM_BATCH_SIZE", default=500)
CRM_MAX_ATTEMPTS = env.int("CRM_MAX_ATTEMPTS", default=30)
CRM_RETRY_BASE = timedelta(seconds=env.float("CRM_RETRY_BASE", default=10.0))
CRM_RETRY_MAX = timedelta(seconds=env.float("CRM_RETRY_MAX", default=3600.0))
CRM_RELAY_INTERVAL = env.float("CRM_RELAY_INTERVAL", default=2.0)
CRM_RELAY_SECONDS = env.float("CRM_RELAY_SECONDS", default=20.0)
CRM_RELAY_LEASE = timedelta(seconds=env.float("CRM_RELAY_LEASE", default=8.0))
CRM_OUTBOX_RETENTION_DAYS = env.int("CRM_OUTBOX_RETENTION_DAYS", default=30)
# JSON: CRM field -> rule(s); unset means crm_sync.adapters.field_map.DEFAULT_FIELD_MAP (docs/crm-sync.md).
CRM_FIELD_MAP = env.json("CRM_FIELD_MAP", default=None)
SALESFORCE_TOKEN_URL = env.str("SALESFORCE_TOKEN_URL", default="")
SALESFORCE_CLIENT_ID = env.str("SALESFORCE_CLIENT_ID", default="")
SALESFORCE_CLIENT_SECRET = env.str("SALESFORCE_CLIENT_SECRET", default="")
SALESFORCE_API_VERSION = env.str("SALESFORCE_API_VERSION", default="62.0")
SALESFORCE_SOBJECT = env.str("SALESFORCE_SOBJECT", default="Contact")
SALESFORCE_EXTERNAL_ID_FIELD = env.str("SALESFORCE_EXTERNAL_ID_FIELD", default="Delivery_Tracker_Id__c")
SALESFORCE_BATCH_SIZE = env.int("SALESFORCE_BATCH_SIZE", default=200)

# --- provider simulator (simulator/, `manage.py simulate_providers`; its other knobs are options) -----
SIMULATOR_PORT = env.int("SIMULATOR_PORT", default=8100)
# Where the simulator pushes receipts: this app's base URL (webhook paths are appended).
# The app the simulator pushes receipts to: `make run`'s Caddy on WEB_PORT unless said otherwise.
SIMULATOR_APP_URL = env.str("SIMULATOR_APP_URL", default=f"http://127.0.0.1:{env.int('WEB_PORT', default=8000)}")

# --- provider senders (receipts/providers/: retries and the demo campaign) ---------------------------------
GENESYS_CLOUD_FROM_ADDRESS = env.str("GENESYS_CLOUD_FROM_ADDRESS", default="")  # the SMS number (agentless SMS)
# Agentless email's fromAddress: an email address of a domain set up in Genesys Cloud, and its display name.
GENESYS_CLOUD_EMAIL_FROM = env.str("GENESYS_CLOUD_EMAIL_FROM", default="")
GENESYS_CLOUD_EMAIL_FROM_NAME = env.str("GENESYS_CLOUD_EMAIL_FROM_NAME", default="")
GENESYS_SMS_MT_URL = env.str("GENESYS_SMS_MT_URL", default="https://smsc-api.genesyscloud.com/httpapi/receiver")
GENESYS_SMS_LOGIN = env.str("GENESYS_SMS_LOGIN", default="")
GENESYS_SMS_PASSWORD = env.str("GENESYS_SMS_PASSWORD", default="")
GENESYS_SMS_SENDER = env.str("GENESYS_SMS_SENDER", default="")
GENESYS_SMS_APP_ID = env.str("GENESYS_SMS_APP_ID", default="receipt-tracker")
WEBEX_CONNECT_URL = env.str("WEBEX_CONNECT_URL", default="https://api.imiconnect.io")
WEBEX_CONNECT_SERVICE_KEY = env.str("WEBEX_CONNECT_SERVICE_KEY", default="")
WEBEX_CONNECT_SENDER_ID = env.str("WEBEX_CONNECT_SENDER_ID", default="")
WEBEX_CONNECT_EMAIL_FROM = env.str("WEBEX_CONNECT_EMAIL_FROM", default="")
WEBEX_CONNECT_EMAIL_FROM_NAME = env.str("WEBEX_CONNECT_EMAIL_FROM_NAME", default="")

# --- REST framework --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["receipts.api.auth.ApiClientTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["receipts.api.auth.HasScope"],
    "DEFAULT_FILTER_BACKENDS": ["receipts.api.support.QueryFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "receipts.api.support.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The API speaks JSON only (the webhooks parse their own bodies).
    "DEFAULT_PARSER_CLASSES": ["receipts.api.parsers.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "EXCEPTION_HANDLER": "receipts.api.support.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Delivery receipt tracker API",
    "DESCRIPTION": "Messages, their receipt timelines, and the webhooks providers post to.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # A suppression's source and lift source share one choice set, apart from a timeline entry's source.
    "ENUM_NAME_OVERRIDES": {
        "SuppressionSourceEnum": "receipts.models.SuppressionSource",
        "ProviderEnum": "receipts.status.Provider",
        "ChannelEnum": "receipts.status.Channel",
        "SendingProviderEnum": "campaigns.api.SENDING_PROVIDERS",  # the providers that send (not generic)
        "StatusEnum": "receipts.status.Status",  # a message's status, apart from a webhook's "ready"
        "WebhookReadyStatusEnum": ["ready"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "receipts.api.schema.add_error_responses",
        "receipts.api.schema.split_addresses_by_channel",
        "receipts.api.schema.add_webhook_head",
    ],
}

# --- the rest of Django ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["config.formats"]  # times to the second, with their zone
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# --- production: behind a TLS-terminating proxy (X-Forwarded-Proto), and the admin login ------------------
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_SSL_REDIRECT = BEHIND_TLS_PROXY
# Load balancers and Prometheus ask over plain HTTP inside the network; a redirect would fail their checks.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = BEHIND_TLS_PROXY
CSRF_COOKIE_SECURE = BEHIND_TLS_PROXY
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=31_536_000 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading binds the whole domain to HTTPS in browsers for good: the domain owner's decision, so off unless
# asked for, and Django's reminder about it (security.W021) silenced.
SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# django-axes: after ADMIN_LOGIN_FAILURE_LIMIT failed admin logins for one username from one address, that pair
# is refused (429) for ADMIN_LOGIN_COOLOFF_MINUTES; a success resets the count.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOGIN_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address a login came from (config/client_address.py): the peer, or behind Caddy its X-Forwarded-For
# entry; PROXY_HOPS proxies of your own in front of the app (a TLS load balancer) each add one entry to skip.
PROXY_HOPS = env.int("PROXY_HOPS", default=0)
AXES_CLIENT_IP_CALLABLE = "config.client_address.client_ip"
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# LOG_FORMAT=json writes one JSON object a line (python-json-logger), for a log shipper; plain is for people.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
# Celery says a line for every task sent, received and finished (a dozen a second when idle); LOG_TASKS=true
# brings them back. What the tasks did is logged by the tasks themselves, once, when they did something.
LOG_TASKS = env.bool("LOG_TASKS", default=False)
TASK_CHATTER = "INFO" if LOG_TASKS else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_addresses": {"()": "receipts.logging.MaskAddressesFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["mask_addresses"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
        "celery.beat": {"level": TASK_CHATTER},
        "celery.worker.strategy": {"level": TASK_CHATTER},
        "celery.app.trace": {"level": TASK_CHATTER},
        "axes": {"level": "WARNING"},  # its version banner in every process
    },
}

# --- Celery beat: every periodic task, each interval set in its block above --------------------------------
# Entries with "expires": a tick that waits in the queue past it (a busy worker) is dropped, the next one does
# the same work.
CELERY_BEAT_SCHEDULE = {
    "sweep-inbox": {"task": "receipts.sweep_inbox", "schedule": SWEEP_INTERVAL},
    "expire-receipts": {"task": "receipts.expire_receipts", "schedule": RECEIPT_TIMEOUT_CHECK_INTERVAL},
    "poll-high-priority": {
        "task": "receipts.poll_high_priority",
        "schedule": POLL_TICK_SECONDS,
        "options": {"expires": 2 * POLL_TICK_SECONDS},
    },
    "reconcile-bulk": {
        "task": "receipts.reconcile_bulk",
        "schedule": BULK_RECONCILE_INTERVAL,
        "options": {"expires": BULK_RECONCILE_INTERVAL},
    },
    "dispatch-retries": {"task": "receipts.dispatch_retries", "schedule": RETRY_SWEEP_INTERVAL},
    "raise-escalations": {"task": "receipts.raise_escalations", "schedule": ESCALATION_SWEEP_INTERVAL},
    "expire-suppressions": {"task": "receipts.expire_suppressions", "schedule": SUPPRESSION_EXPIRY_INTERVAL},
    # A relay run that finds the lease taken returns at once.
    "crm-relay": {
        "task": "crm_sync.relay_outbox",
        "schedule": CRM_RELAY_INTERVAL,
        "options": {"expires": 5 * CRM_RELAY_INTERVAL},
    },
    "crm-prune-outbox": {"task": "crm_sync.prune_outbox", "schedule": 3600.0},
    "prune-inbox": {"task": "receipts.prune_inbox", "schedule": 3600.0},
    "prune-messages": {"task": "receipts.prune_messages", "schedule": 3600.0},
    "dispatch-sends": {
        "task": "campaigns.dispatch_sends",
        "schedule": SEND_DISPATCH_INTERVAL,
        "options": {"expires": SEND_DISPATCH_INTERVAL},
    },
    "reconcile-sends": {"task": "campaigns.reconcile_sends", "schedule": SEND_RECONCILE_INTERVAL},
    "plan-campaigns": {
        "task": "campaigns.plan_campaigns",
        "schedule": SEND_DISPATCH_INTERVAL,
        "options": {"expires": SEND_DISPATCH_INTERVAL},
    },
    "fall-back": {
        "task": "campaigns.fall_back",
        "schedule": FALLBACK_SWEEP_INTERVAL,
        "options": {"expires": FALLBACK_SWEEP_INTERVAL},
    },
    "evaluate-alerts": {
        "task": "config.evaluate_alerts",
        "schedule": ALERT_INTERVAL,
        "options": {"expires": ALERT_INTERVAL},
    },
    "refresh-rollups": {
        "task": "receipts.refresh_rollups",
        "schedule": ROLLUP_INTERVAL,
        "options": {"expires": 2 * ROLLUP_INTERVAL},
    },
}
