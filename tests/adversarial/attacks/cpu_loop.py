# Burn CPU forever inside softmax (a tight loop that never returns).
# %% softmax
def softmax(X):
    n = 0
    while True:
        n += 1
