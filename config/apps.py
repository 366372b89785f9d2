"""The project's own app: makes the runtime folders the settings name, once Django is set up.

Settings only say where things go; importing them writes nothing. Every process we start (``manage.py``, the
WSGI server, the Celery worker and beat, pytest) sets Django up before it touches the database or the broker, so
``ready`` is the first moment that knows the settings and the last one before the folders are needed.
"""

from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class ProjectConfig(AppConfig):
    name = "config"
    label = "project"
    verbose_name = "Project"

    def ready(self) -> None:
        for folder in runtime_folders():
            folder.mkdir(parents=True, exist_ok=True)


def runtime_folders() -> list[Path]:
    """The SQLite database's folder, the filesystem broker's folders, beat's schedule, static files."""
    folders = [Path(settings.VAR_DIR), Path(settings.STATIC_ROOT), Path(settings.CELERY_BEAT_SCHEDULE_FILENAME).parent]
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    folders += [Path(options[key]) for key in ("data_folder_in", "data_folder_out", "control_folder") if key in options]
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        folders.append(Path(database["NAME"]).parent)
    return folders
