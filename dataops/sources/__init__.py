"""The source registry (the declarations in models/staging/<source>/), the staging files derived
from it, and onboarding of new sources."""
