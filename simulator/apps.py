from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """The provider simulator and the fake CRM: development, the demo and the tests only.

    No models. The product never imports this package, so a deployment leaves it out of ``INSTALLED_APPS``
    (``INSTALL_SIMULATOR=false``) and loses only the ``simulate_providers`` and ``fake_crm`` commands.
    """

    name = "simulator"
    verbose_name = "Provider simulator and fake CRM"
