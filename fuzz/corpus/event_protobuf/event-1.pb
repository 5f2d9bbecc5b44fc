
ev-0002defaultˆ ÙÜÀ²Í;"
a*
bR
you have 30 minutes