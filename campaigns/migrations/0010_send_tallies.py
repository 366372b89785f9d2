from django.db import migrations

from receipts import tallies

# A campaign's sends by state, kept by triggers (receipts.tallies): its page and API detail read them.
count_sends, forget_sends = tallies.migration('campaigns_send', tallies.SEND_COUNTERS, ['state', 'campaign_id'])


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0009_sender_identities_per_channel'),
        ('receipts', '0022_tallies'),
    ]

    operations = [
        migrations.RunPython(count_sends, forget_sends),
    ]
