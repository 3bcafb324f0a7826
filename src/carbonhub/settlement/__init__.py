"""Settlement: cash accounts at settlement banks, delivery versus payment, daily clearing."""
