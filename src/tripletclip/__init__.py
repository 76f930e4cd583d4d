"""tripletclip: compositional CLIP training with synthetic hard negatives (TripletCLIP, CE-CLIP, NegCLIP)."""
__version__ = "0.1.0"
