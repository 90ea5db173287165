from fleetpulse.webhook_receiver.app import main

main()
