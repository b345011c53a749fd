from chat_client.main import main

main()
