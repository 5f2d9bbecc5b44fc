
ev-0001chat-frİºÙÜ"
usr-42À»•Ü"en-GB*
usr-7"fr-FR2dm-42-7R5
+t'as 1h pour payer sinon j'envoie tout ğŸ“¸