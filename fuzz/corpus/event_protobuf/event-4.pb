
ev-0005defaultİºÙÜ"
a*
bj