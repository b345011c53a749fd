from service.client.main import main

main()
